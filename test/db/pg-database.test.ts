import assert from 'node:assert/strict'
import { test } from 'node:test'
import { createPgDatabase } from '../../src/db/pg-database.js'
import { backends, createPostgresDatabase } from '../helper.js'

if (backends().some((b) => b.name === 'postgres')) {
  test('a query asked to be prepared is prepared once per connection and reused; others are not kept', async () => {
    const base = process.env.TEST_DATABASE_URL
    assert.ok(base, 'TEST_DATABASE_URL must be set under CI=true')
    const database = await createPostgresDatabase(base)
    // One connection, so pg_prepared_statements (per session) shows what the pool's queries left behind.
    const db = createPgDatabase({ url: database.url, poolMax: 1, statementTimeoutMs: 30_000 })
    try {
      const prepared = 'SELECT $1::int + 1 AS n'
      for (const value of [1, 2, 3]) {
        assert.equal((await db.query<{ n: number }>(prepared, [value], { prepare: true })).rows[0]!.n, value + 1)
      }
      await db.query('SELECT $1::int * 2 AS n', [4])
      const { rows } = await db.query<{ statement: string }>('SELECT statement FROM pg_prepared_statements ORDER BY statement')
      assert.deepEqual(rows.map((row) => row.statement), [prepared])
      // Inside a transaction (a batch's insert) the same name is reused on that connection too.
      await db.transaction(async (tx) => {
        assert.equal((await tx.query<{ n: number }>(prepared, [9], { prepare: true })).rows[0]!.n, 10)
      })
    } finally {
      await db.close()
      await database.drop()
    }
  })
}
