import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import type { Database } from '../../src/db/database.js'
import { backends, useTestApp } from '../helper.js'

// migrations/004: a memory's row stays whole in its page up to 4 KB, neither compressed nor moved to the TOAST
// table, because doing both on every save cost Postgres 5-13% more CPU a memory. Larger rows are TOASTed still.

async function toastRows(db: Database): Promise<number> {
  const { rows } = await db.query<{ toast: string }>("SELECT reltoastrelid::regclass::text AS toast FROM pg_class WHERE oid = 'memories'::regclass")
  return (await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${rows[0]!.toast}`)).rows[0]!.n
}

for (const backend of backends()) {
  describe(`memory rows on ${backend.name}`, () => {
    const suite = useTestApp(backend)

    test('a hook-sized memory with its 384-dimension vector is stored in its row, uncompressed', async () => {
      const { app, store } = suite
      await store.reset()
      // About what a hook saves: 600 characters of prose with identifiers, its row about 2.5 KB with the vector.
      const content = 'We decided to keep the ledgerExport cursor in src/export/ledger.ts and retry ERR_CONN_RESET with backoff. '.repeat(6).slice(0, 600)
      const saved = await app.inject({ method: 'POST', url: '/v1/memories', payload: { content, namespace: 'rows', tags: ['decision'] } })
      assert.equal(saved.statusCode, 201, saved.body)
      const { rows } = await store.db.query<{ size: number; content: string | null; terms: string | null; embedded: boolean }>(
        `SELECT pg_column_size(m.*)::int AS size, pg_column_compression(content) AS content, pg_column_compression(search_terms) AS terms,
                embedding IS NOT NULL AS embedded
         FROM memories m WHERE id = $1`,
        [saved.json().id]
      )
      const row = rows[0]!
      assert.ok(row.embedded, 'the memory has its vector')
      assert.ok(row.size > 2_100, `the row is past the 2 KB where Postgres would TOAST it (${row.size} bytes)`)
      assert.equal(row.content, null, 'content is not compressed')
      assert.equal(row.terms, null, 'search terms are not compressed')
      assert.equal(await toastRows(store.db), 0, 'nothing was moved to the TOAST table')
    })

    test('a memory past 4 KB is still TOASTed and reads back whole', async () => {
      const { app, store } = suite
      await store.reset()
      const content = Array.from({ length: 400 }, (_, i) => `step ${i} of the ledgerExport migration`).join('; ')
      const saved = await app.inject({ method: 'POST', url: '/v1/memories', payload: { content, namespace: 'rows' } })
      assert.equal(saved.statusCode, 201, saved.body)
      const read = await app.inject({ method: 'GET', url: `/v1/memories/${saved.json().id}` })
      assert.equal(read.statusCode, 200, read.body)
      assert.equal(read.json().content, content)
      assert.ok(await toastRows(store.db) > 0, 'its values were moved to the TOAST table')
    })
  })
}
