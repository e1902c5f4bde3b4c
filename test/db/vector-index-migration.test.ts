import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'
import { copyFile, mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, test } from 'node:test'
import type { Database } from '../../src/db/database.js'
import { MIGRATIONS_DIR, loadMigrations, migrate } from '../../src/db/migrate.js'
import { createPgDatabase } from '../../src/db/pg-database.js'
import { createPgliteDatabase } from '../../src/db/pglite-database.js'
import { LexicalEmbedder } from '../../src/embedder/lexical-embedder.js'
import { vectorParam } from '../../src/db/vector-param.js'
import { searchTerms } from '../../src/memory/memory-service.js'
import { backends, buildTestApp, createPostgresDatabase } from '../helper.js'

// migrations/003_vector_index.sql over a store built by the code before it: the HNSW index was on memories
// (memories_embedding_hnsw_<dim>, made by the old embedder binding) and every embedded memory was in it.

const BEFORE_003 = ['001_memories.sql', '002_delete_audit.sql']

/** A fresh, empty store of the backend, not migrated. */
async function freshStore(name: 'pglite' | 'postgres'): Promise<{ db: Database; drop(): Promise<void> }> {
  if (name === 'pglite') {
    const db = await createPgliteDatabase(undefined)
    return { db, drop: () => db.close() }
  }
  const database = await createPostgresDatabase(process.env.TEST_DATABASE_URL!)
  const db = createPgDatabase({ url: database.url, poolMax: 4, statementTimeoutMs: 30_000 })
  return {
    db,
    async drop() {
      await db.close()
      await database.drop()
    }
  }
}

/** Applies only the migrations before 003, recorded as `migrate` records them, so a later run applies 003 alone. */
async function migrateBefore003(db: Database): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'sage-migrations-'))
  try {
    for (const file of BEFORE_003) await copyFile(join(MIGRATIONS_DIR, file), join(dir, file))
    assert.deepEqual(await migrate(db, dir), BEFORE_003)
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
}

for (const backend of backends()) {
  describe(`migration 003 (vector index) over an older store, on ${backend.name}`, () => {
    test('moves the stored vectors into memory_vectors, drops the old index, and recall finds them through the new one', async () => {
      const store = await freshStore(backend.name)
      try {
        const { db } = store
        await migrateBefore003(db)
        const versions = async () => (await db.query<{ version: number }>('SELECT version FROM sage_migrations ORDER BY version')).rows.map((r) => r.version)
        assert.deepEqual(await versions(), [1, 2])

        // What the old binding left: its record and its expression index on memories.
        const embedder = new LexicalEmbedder({ dimension: 384 })
        await db.query("INSERT INTO sage_settings (key, value) VALUES ('embedder', $1::jsonb)", [JSON.stringify({ id: embedder.id, dimension: 384 })])
        await db.query(
          `CREATE INDEX memories_embedding_hnsw_384 ON memories
           USING hnsw ((embedding::vector(384)) vector_cosine_ops) WITH (m = 16, ef_construction = 64)
           WHERE vector_dims(embedding) = 384`
        )

        // Two embedded memories, a third one still waiting for the backfill, and another namespace's memory.
        const rows = [
          { id: randomUUID(), namespace: 'old', content: 'Switched the ledger export to keyset pagination with pages of 5,000 rows.', embedded: true },
          { id: randomUUID(), namespace: 'old', content: 'Rotate the payments gateway api keys every month.', embedded: true },
          { id: randomUUID(), namespace: 'old', content: 'The deploy pipeline fails on the docker build step.', embedded: false },
          { id: randomUUID(), namespace: 'other', content: 'ledger export pagination of another project.', embedded: true }
        ]
        const vectors = await embedder.embed(rows.map((r) => r.content))
        for (const [i, row] of rows.entries()) {
          await db.query(
            `INSERT INTO memories (id, namespace, role, content, search_terms, embedding, embedder)
             VALUES ($1, $2, 'note', $3, to_tsvector('simple', $4), $5::vector, $6)`,
            [row.id, row.namespace, row.content, searchTerms(row.content).join(' '), row.embedded ? vectorParam(vectors[i]!) : null, row.embedded ? embedder.id : null]
          )
        }
        const embeddedIds = rows.filter((r) => r.embedded).map((r) => r.id).sort()

        // The app migrates (003 and any later) and binds the embedder, which builds the new index.
        const app = await buildTestApp(db, {}, { vectorIndexer: false })
        try {
          assert.deepEqual(await versions(), (await loadMigrations()).map((m) => m.version))
          const moved = await db.query<{ id: string; same: boolean }>(
            'SELECT mv.id::text AS id, mv.embedding = m.embedding AS same FROM memory_vectors mv JOIN memories m ON m.id = mv.id ORDER BY mv.id'
          )
          assert.deepEqual(moved.rows.map((r) => r.id), embeddedIds, 'every embedded memory, and only those, is in memory_vectors')
          assert.ok(moved.rows.every((r) => r.same), 'with its own vector')
          assert.equal((await db.query<{ n: number }>('SELECT count(*)::int AS n FROM vector_backlog')).rows[0]!.n, 0, 'nothing waits in the backlog')

          const indexes = await db.query<{ tablename: string; indexname: string }>(
            "SELECT tablename, indexname FROM pg_indexes WHERE indexname LIKE '%hnsw%' ORDER BY indexname"
          )
          assert.deepEqual(indexes.rows, [{ tablename: 'memory_vectors', indexname: 'memory_vectors_hnsw_384' }])

          // Only the vector side can find these: the queries share no term with the memories.
          const recall = async (query: string) => {
            const res = await app.inject({ method: 'POST', url: '/v1/recall', payload: { namespace: 'old', query, mode: 'vector', k: 5 } })
            assert.equal(res.statusCode, 200, res.body)
            return res.json().results as Array<{ id: string; namespace: string; scores: { vector: number } }>
          }
          const ledger = await recall('ledgr exprt paginaton')
          assert.equal(ledger[0]?.id, rows[0]!.id)
          assert.ok(ledger.every((hit) => hit.namespace === 'old'))
          const keys = await recall('rotatng paymnt gatway kys')
          assert.equal(keys[0]?.id, rows[1]!.id)
          assert.ok(!ledger.some((hit) => hit.id === rows[2]!.id), 'a memory without a vector is no vector hit')

          // The memory that waited for its vector joins through the backlog, as new saves do.
          assert.equal(await app.backfill.runOnce(), 1)
          assert.deepEqual((await db.query<{ id: string }>('SELECT id::text AS id FROM vector_backlog')).rows.map((r) => r.id), [rows[2]!.id])
          assert.equal(await app.vectorIndexer.drainOnce(), 1)
          assert.equal((await db.query<{ n: number }>('SELECT count(*)::int AS n FROM memory_vectors')).rows[0]!.n, 4)
          assert.equal((await recall('dockr pipelne bild'))[0]?.id, rows[2]!.id)
        } finally {
          await app.close()
        }
      } finally {
        await store.drop()
      }
    })

    test('a store without vectors yet migrates to empty tables and the index for the configured dimension', async () => {
      const store = await freshStore(backend.name)
      try {
        await migrateBefore003(store.db)
        const app = await buildTestApp(store.db, {}, { vectorIndexer: false })
        try {
          const counts = await store.db.query<{ vectors: number; backlog: number }>(
            'SELECT (SELECT count(*) FROM memory_vectors)::int AS vectors, (SELECT count(*) FROM vector_backlog)::int AS backlog'
          )
          assert.deepEqual(counts.rows[0], { vectors: 0, backlog: 0 })
          const indexes = await store.db.query<{ indexname: string }>("SELECT indexname FROM pg_indexes WHERE indexname LIKE '%hnsw%'")
          assert.deepEqual(indexes.rows.map((r) => r.indexname), ['memory_vectors_hnsw_384'])
        } finally {
          await app.close()
        }
      } finally {
        await store.drop()
      }
    })
  })
}
