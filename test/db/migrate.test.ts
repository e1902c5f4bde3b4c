import assert from 'node:assert/strict'
import { test } from 'node:test'
import { createPgDatabase } from '../../src/db/pg-database.js'
import { createPgliteDatabase } from '../../src/db/pglite-database.js'
import { loadMigrations, migrate } from '../../src/db/migrate.js'
import { backends, createPostgresDatabase } from '../helper.js'

test('migrations are numbered plain SQL files, applied once each', async () => {
  const migrations = await loadMigrations()
  assert.ok(migrations.length >= 1)
  assert.deepEqual(migrations.map((m) => m.version), [...new Set(migrations.map((m) => m.version))].sort((a, b) => a - b))
  const db = await createPgliteDatabase(undefined)
  try {
    assert.deepEqual(await migrate(db), migrations.map((m) => m.name))
    assert.deepEqual(await migrate(db), [])
    const { rows } = await db.query<{ n: number }>('SELECT count(*)::int AS n FROM sage_migrations')
    assert.equal(rows[0]!.n, migrations.length)
  } finally {
    await db.close()
  }
})

if (backends().some((b) => b.name === 'postgres')) {
  test('replicas starting together on one Postgres apply each migration exactly once', async () => {
    const base = process.env.TEST_DATABASE_URL
    assert.ok(base, 'TEST_DATABASE_URL must be set under CI=true')
    const database = await createPostgresDatabase(base)
    const replicas = Array.from({ length: 4 }, () => createPgDatabase({ url: database.url, poolMax: 2, statementTimeoutMs: 30_000 }))
    try {
      const applied = await Promise.all(replicas.map((db) => migrate(db)))
      const all = applied.flat()
      const migrations = await loadMigrations()
      assert.deepEqual(all.sort(), migrations.map((m) => m.name).sort(), 'each migration applied by exactly one replica')
    } finally {
      await Promise.all(replicas.map((db) => db.close()))
      await database.drop()
    }
  })
}
