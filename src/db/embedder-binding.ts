import { NO_QUERY_TIMEOUT, type Database, type Queryable } from './database.js'
import { withAdvisoryLock } from './connection-scopes.js'
import type { Embedder } from '../embedder/embedder.js'

/** An advisory lock of its own (migrations hold another): replicas starting together must not race on the binding or the index. */
const BINDING_LOCK_KEY = 7_286_813_002

interface Binding {
  id: string
  dimension: number
}

export class EmbedderMismatchError extends Error {
  constructor(stored: Binding, configured: Binding, embedded: number) {
    super(
      `The store holds ${embedded} memories embedded by "${stored.id}" (${stored.dimension} dimensions), but this ` +
      `process is configured with "${configured.id}" (${configured.dimension} dimensions). Sage never mixes vectors ` +
      'from different embedders. Either set EMBEDDING_* back to the embedder the store was built with, or run ' +
      '`sage-memory reembed` (with the new EMBEDDING_* settings) to switch: it clears the old vectors and the service ' +
      're-embeds every memory in the background, recalling by full text meanwhile.'
    )
    this.name = 'EmbedderMismatchError'
  }
}

const indexName = (dimension: number) => `memory_vectors_hnsw_${dimension}`

async function createIndex(connection: Queryable, dimension: number): Promise<void> {
  // An expression index per dimension, because the column itself is untyped (see migrations/001 and 003). The
  // predicate keeps vectors of another length out: CREATE INDEX also reads recently dead rows (say, cleared by
  // reembed) that an open snapshot may still see, and casting one of those would fail.
  // Building over vectors already stored (after migration 003 or a reembed) takes minutes at 100,000: no timeout.
  await connection.query('SET statement_timeout = 0')
  try {
    await connection.query(
      `CREATE INDEX IF NOT EXISTS ${indexName(dimension)} ON memory_vectors
       USING hnsw ((embedding::vector(${dimension})) vector_cosine_ops) WITH (m = 16, ef_construction = 64)
       WHERE vector_dims(embedding) = ${dimension}`,
      [],
      { timeoutMs: NO_QUERY_TIMEOUT }
    )
  } finally {
    // Inside a transaction that failed, RESET fails too; the rollback undoes the SET anyway, and the first error counts.
    await connection.query('RESET statement_timeout').catch(() => undefined)
  }
}

async function dropOtherIndexes(connection: Queryable, keep: number | undefined): Promise<void> {
  const { rows } = await connection.query<{ indexname: string }>(
    "SELECT indexname FROM pg_indexes WHERE tablename = 'memory_vectors' AND indexname LIKE 'memory_vectors_hnsw_%'"
  )
  for (const { indexname } of rows) {
    if (keep === undefined || indexname !== indexName(keep)) await connection.query(`DROP INDEX IF EXISTS ${indexname}`)
  }
}

const withBindingLock = <T>(db: Database, work: (connection: Queryable) => Promise<T>) => withAdvisoryLock(db, BINDING_LOCK_KEY, work)

async function writeBinding(connection: Queryable, binding: Binding): Promise<void> {
  await connection.query(
    `INSERT INTO sage_settings (key, value) VALUES ('embedder', $1::jsonb)
     ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, updated_at = now()`,
    [JSON.stringify(binding)]
  )
}

/**
 * Records which embedder the stored vectors come from and builds its index. A store whose vectors came
 * from another embedder stops the start (EmbedderMismatchError), unless it holds no vectors yet.
 */
export async function bindEmbedder(db: Database, embedder: Embedder): Promise<void> {
  const configured: Binding = { id: embedder.id, dimension: embedder.dimension }
  await withBindingLock(db, async (connection) => {
    const { rows } = await connection.query<{ value: Binding }>("SELECT value FROM sage_settings WHERE key = 'embedder'")
    const stored = rows[0]?.value
    // Judge by the vectors themselves, not only the recorded binding: no foreign vector may stay.
    const foreign = 'FROM memories WHERE embedding IS NOT NULL AND embedder IS DISTINCT FROM $1'
    const { rows: found } = await connection.query<{ embedder: string }>(`SELECT embedder ${foreign} LIMIT 1`, [configured.id])
    if (found[0]) {
      const { rows: counted } = await connection.query<{ n: number }>(`SELECT count(*)::int AS n ${foreign}`, [configured.id])
      const other = stored && stored.id === found[0].embedder ? stored : { id: found[0].embedder, dimension: Number(found[0].embedder.split('/').pop()) || 0 }
      throw new EmbedderMismatchError(other, configured, counted[0]?.n ?? 0)
    }
    if (!stored || stored.id !== configured.id) {
      await dropOtherIndexes(connection, configured.dimension)
      await writeBinding(connection, configured)
    }
    await createIndex(connection, configured.dimension)
  })
}

/**
 * Switches the store to `embedder`: old vectors are cleared and the backfill re-embeds every memory. Safe while
 * the store serves: one transaction (a crash halfway must not leave old vectors in the index while their memories
 * wait for new ones), which on PGlite's one connection also holds other statements off until it ends.
 */
export async function rebindEmbedder(db: Database, embedder: Embedder): Promise<number> {
  return withBindingLock(db, () =>
    db.transaction(async (tx) => {
      await dropOtherIndexes(tx, undefined)
      const { rowCount } = await tx.query('UPDATE memories SET embedding = NULL, embedder = NULL WHERE embedding IS NOT NULL')
      await tx.query('DELETE FROM memory_vectors')
      await tx.query('DELETE FROM vector_backlog')
      await writeBinding(tx, { id: embedder.id, dimension: embedder.dimension })
      await createIndex(tx, embedder.dimension)
      return rowCount
    })
  )
}
