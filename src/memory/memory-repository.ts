import pgvector from 'pgvector'
import type { Queryable } from '../db/database.js'
import { validationError } from '../errors.js'
import type { Memory, RecallFilter, RecallMode, Role, SaveResult } from './memory-schemas.js'

/** A memory ready to be written: validated, normalised, its ids assigned and its terms computed. */
export interface NewMemory {
  id: string
  namespace: string
  session_id: string | null
  role: Role
  content: string
  metadata: Record<string, unknown>
  tags: string[]
  source_id: string | null
  idempotency_key: string | null
  created_at: Date
  /** Space-separated terms from the shared tokenizer. */
  search_terms: string
  embedding: number[] | null
  embedder: string | null
}

export interface RecallParams {
  namespace: string
  sessionId?: string | null
  mode: RecallMode
  k: number
  filter?: RecallFilter
  /** Query vector; absent when the embedder could not be reached (text recall still works). */
  vector?: number[]
  /** Query terms from the shared tokenizer. */
  terms: string[]
}

export interface RecallRow extends Memory {
  score: number
  vector_score: number | null
  text_score: number | null
}

export interface ListParams {
  namespace: string
  sessionId?: string
  role?: Role
  limit: number
  cursor?: string
}

export interface DeletionRecord {
  keyName: string | null
  keyScopes: readonly string[]
  namespace: string
  memoryId?: string
  sessionId?: string
  count: number
}

export interface SessionSummary {
  session_id: string
  count: number
  first_at: string
  last_at: string
}

const MEMORY_COLUMNS = 'id, namespace, session_id, role, content, metadata, tags, source_id, created_at'

interface MemoryRow {
  id: string
  namespace: string
  session_id: string | null
  role: Role
  content: string
  metadata: Record<string, unknown>
  tags: string[]
  source_id: string | null
  created_at: Date | string
}

const toIso = (value: Date | string) => (value instanceof Date ? value : new Date(value)).toISOString()

export function toMemory(row: MemoryRow): Memory {
  return {
    id: row.id,
    namespace: row.namespace,
    session_id: row.session_id,
    role: row.role,
    content: row.content,
    metadata: row.metadata ?? {},
    tags: row.tags ?? [],
    source_id: row.source_id,
    created_at: toIso(row.created_at)
  }
}

export const vectorLiteral = (vector: readonly number[]): string => pgvector.toSql(vector)

/** All SQL over the memories table lives here, parameterised, written once for Postgres and PGlite. */
export function createMemoryRepository(db: Queryable, dimension: number) {
  const dims = Math.trunc(dimension)
  const vectorType = `vector(${dims})`
  const embeddingExpr = `(embedding::${vectorType})`

  return {
    /**
     * Inserts the memories that are new and finds the first ids of those that are not (same source_id
     * or idempotency key in the namespace). Results follow input order. Pass a transaction handle to
     * make it part of a larger all-or-nothing write.
     */
    async insertMany(memories: readonly NewMemory[], tx: Queryable = db): Promise<SaveResult[]> {
      if (memories.length === 0) return []
      const inserted = await tx.query<{ id: string }>(
        `INSERT INTO memories (id, namespace, session_id, role, content, metadata, tags, source_id, idempotency_key,
                               created_at, search_terms, embedding, embedder)
         SELECT u.id, u.namespace, u.session_id, u.role, u.content, u.metadata::jsonb,
                ARRAY(SELECT jsonb_array_elements_text(u.tags::jsonb)), u.source_id, u.idempotency_key,
                u.created_at, to_tsvector('simple', u.terms), u.embedding::vector, u.embedder
         FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[],
                     $9::text[], $10::timestamptz[], $11::text[], $12::text[], $13::text[])
              AS u(id, namespace, session_id, role, content, metadata, tags, source_id, idempotency_key,
                   created_at, terms, embedding, embedder)
         ON CONFLICT DO NOTHING
         RETURNING id`,
        [
          memories.map((m) => m.id),
          memories.map((m) => m.namespace),
          memories.map((m) => m.session_id),
          memories.map((m) => m.role),
          memories.map((m) => m.content),
          memories.map((m) => JSON.stringify(m.metadata)),
          memories.map((m) => JSON.stringify(m.tags)),
          memories.map((m) => m.source_id),
          memories.map((m) => m.idempotency_key),
          memories.map((m) => m.created_at.toISOString()),
          memories.map((m) => m.search_terms),
          memories.map((m) => (m.embedding ? vectorLiteral(m.embedding) : null)),
          memories.map((m) => (m.embedding ? m.embedder : null))
        ]
      )
      const created = new Set(inserted.rows.map((row) => row.id))
      if (created.size === memories.length) return memories.map((m) => ({ id: m.id, created: true }))

      // The rest collided with an earlier save (maybe earlier in this very batch), or are that save itself
      // written again (a replayed queue entry keeps its ids): answer with the stored one's id.
      const duplicates = memories.filter((m) => !created.has(m.id))
      const existing = await tx.query<{ id: string; namespace: string; source_id: string | null; idempotency_key: string | null }>(
        `SELECT id, namespace, source_id, idempotency_key FROM memories
         WHERE (namespace, source_id) IN (SELECT * FROM unnest($1::text[], $2::text[]))
            OR (namespace, idempotency_key) IN (SELECT * FROM unnest($3::text[], $4::text[]))
            OR id = ANY($5::uuid[])`,
        [
          duplicates.filter((m) => m.source_id).map((m) => m.namespace),
          duplicates.filter((m) => m.source_id).map((m) => m.source_id),
          duplicates.filter((m) => m.idempotency_key).map((m) => m.namespace),
          duplicates.filter((m) => m.idempotency_key).map((m) => m.idempotency_key),
          duplicates.map((m) => m.id)
        ]
      )
      const stored = new Set(existing.rows.map((row) => row.id))
      const byKey = new Map<string, string>()
      const bySource = new Map<string, string>()
      for (const row of existing.rows) {
        if (row.idempotency_key) byKey.set(`${row.namespace}\u0000${row.idempotency_key}`, row.id)
        if (row.source_id) bySource.set(`${row.namespace}\u0000${row.source_id}`, row.id)
      }
      return memories.map((m) => {
        if (created.has(m.id)) return { id: m.id, created: true }
        const id =
          (stored.has(m.id) && m.id) ||
          (m.idempotency_key && byKey.get(`${m.namespace}\u0000${m.idempotency_key}`)) ||
          (m.source_id && bySource.get(`${m.namespace}\u0000${m.source_id}`))
        // Only a row deleted between our insert and this read gets here; the caller may retry.
        if (!id) throw new Error(`memory ${m.id} collided with a row that no longer exists`)
        return { id, created: false }
      })
    },

    async get(id: string): Promise<Memory | undefined> {
      const { rows } = await db.query<MemoryRow>(`SELECT ${MEMORY_COLUMNS} FROM memories WHERE id = $1`, [id])
      return rows[0] && toMemory(rows[0])
    },

    async list(params: ListParams): Promise<{ items: Memory[]; next_cursor: string | null }> {
      const values: unknown[] = [params.namespace]
      const where = ['namespace = $1']
      if (params.sessionId !== undefined) where.push(`session_id = $${values.push(params.sessionId)}`)
      if (params.role !== undefined) where.push(`role = $${values.push(params.role)}`)
      if (params.cursor !== undefined) {
        const [at, id] = decodeCursor(params.cursor)
        where.push(`(created_at, id) < ($${values.push(at)}::timestamptz, $${values.push(id)}::uuid)`)
      }
      const { rows } = await db.query<MemoryRow>(
        `SELECT ${MEMORY_COLUMNS} FROM memories WHERE ${where.join(' AND ')}
         ORDER BY created_at DESC, id DESC LIMIT $${values.push(params.limit + 1)}`,
        values
      )
      const items = rows.slice(0, params.limit).map(toMemory)
      const last = items.at(-1)
      return { items, next_cursor: rows.length > params.limit && last ? encodeCursor(last.created_at, last.id) : null }
    },

    /** Deletes one memory; answers its namespace so the caller can invalidate what depends on it. */
    async delete(id: string, tx: Queryable = db): Promise<string | undefined> {
      const { rows } = await tx.query<{ namespace: string }>('DELETE FROM memories WHERE id = $1 RETURNING namespace', [id])
      return rows[0]?.namespace
    },

    /** The namespace of one memory, its row locked until the transaction `tx` ends (check, then delete). */
    async lockNamespaceOf(id: string, tx: Queryable): Promise<string | undefined> {
      const { rows } = await tx.query<{ namespace: string }>('SELECT namespace FROM memories WHERE id = $1 FOR UPDATE', [id])
      return rows[0]?.namespace
    },

    async deleteMany(namespace: string, sessionId?: string, tx: Queryable = db): Promise<number> {
      const { rowCount } =
        sessionId === undefined
          ? await tx.query('DELETE FROM memories WHERE namespace = $1', [namespace])
          : await tx.query('DELETE FROM memories WHERE namespace = $1 AND session_id = $2', [namespace, sessionId])
      return rowCount
    },

    /** One row of the delete audit (migrations/002_delete_audit.sql); pass the delete's transaction. */
    async recordDeletion(record: DeletionRecord, tx: Queryable = db): Promise<void> {
      await tx.query(
        `INSERT INTO delete_audit (key_name, key_scopes, namespace, memory_id, session_id, deleted_count)
         VALUES ($1, $2::text[], $3, $4, $5, $6)`,
        [record.keyName, [...record.keyScopes], record.namespace, record.memoryId ?? null, record.sessionId ?? null, record.count]
      )
    },

    async sessions(namespace: string, limit: number): Promise<SessionSummary[]> {
      const { rows } = await db.query<{ session_id: string; count: number; first_at: Date | string; last_at: Date | string }>(
        `SELECT session_id, count(*)::int AS count, min(created_at) AS first_at, max(created_at) AS last_at
         FROM memories WHERE namespace = $1 AND session_id IS NOT NULL
         GROUP BY session_id ORDER BY max(created_at) DESC LIMIT $2`,
        [namespace, limit]
      )
      return rows.map((row) => ({ session_id: row.session_id, count: row.count, first_at: toIso(row.first_at), last_at: toIso(row.last_at) }))
    },

    /**
     * One round trip: candidates from the vector k-NN (HNSW, iterative scan so filters cannot starve it)
     * and from the full-text index, then both scores for every candidate, fused into one relevance.
     * Every condition applies to both sides; the namespace always.
     */
    async recall(params: RecallParams): Promise<RecallRow[]> {
      const values: unknown[] = [params.namespace]
      const where = ['namespace = $1']
      const f = params.filter ?? {}
      if (params.sessionId) where.push(`session_id = $${values.push(params.sessionId)}`)
      if (f.exclude_session_id) where.push(`session_id IS DISTINCT FROM $${values.push(f.exclude_session_id)}`)
      if (f.role?.length) where.push(`role = ANY($${values.push(f.role)}::text[])`)
      if (f.tags?.length) where.push(`tags @> $${values.push(f.tags)}::text[]`)
      if (f.metadata && Object.keys(f.metadata).length > 0) where.push(`metadata @> $${values.push(JSON.stringify(f.metadata))}::jsonb`)
      if (f.since) where.push(`created_at >= $${values.push(f.since)}::timestamptz`)
      if (f.until) where.push(`created_at <= $${values.push(f.until)}::timestamptz`)
      const conditions = where.join(' AND ')

      const useVector = params.mode !== 'text' && params.vector !== undefined
      const useText = params.mode !== 'vector' && params.terms.length > 0
      if (!useVector && !useText) return []
      const candidates = useVector && useText ? Math.min(Math.max(params.k * 4, 40), 200) : params.k

      const sources: string[] = []
      let vectorScore = 'NULL::float8'
      let textScore = 'NULL::float8'
      if (useVector) {
        const q = `$${values.push(vectorLiteral(params.vector!))}::${vectorType}`
        sources.push(`v AS MATERIALIZED (
          SELECT id FROM memories WHERE ${conditions} AND vector_dims(embedding) = ${dims}
          ORDER BY ${embeddingExpr} <=> ${q} LIMIT ${candidates})`)
        vectorScore = `CASE WHEN vector_dims(m.embedding) = ${dims} THEN 1 - ((m.embedding::${vectorType}) <=> ${q}) END`
      }
      if (useText) {
        const terms = `$${values.push(params.terms)}::text[]`
        const tsquery = `to_tsquery('simple', $${values.push(params.terms.map((term) => `'${term}'`).join(' | '))})`
        sources.push(`t AS MATERIALIZED (
          SELECT id FROM memories WHERE ${conditions} AND search_terms @@ ${tsquery}
          ORDER BY ts_rank(search_terms, ${tsquery}) DESC, created_at DESC LIMIT ${candidates})`)
        // Coverage: the share of the query's distinct terms the memory contains, in [0, 1].
        textScore = `(SELECT count(*) FROM unnest(tsvector_to_array(m.search_terms)) AS lexeme WHERE lexeme = ANY(${terms}))::float8 / ${params.terms.length}`
      }
      const union = [useVector && 'SELECT id FROM v', useText && 'SELECT id FROM t'].filter(Boolean).join(' UNION ')
      // Either signal alone can make a memory relevant: fuse as a probabilistic OR of the two scores.
      const fused = params.mode === 'vector' ? 'vector_score' : params.mode === 'text' ? 'text_score'
        : `1 - (1 - greatest(coalesce(vector_score, 0), 0)) * (1 - coalesce(text_score, 0))`

      const { rows } = await db.query<MemoryRow & { score: number; vector_score: number | null; text_score: number | null }>(
        `WITH ${sources.join(',\n')},
         scored AS (
           SELECT ${MEMORY_COLUMNS.split(', ').map((c) => `m.${c}`).join(', ')},
                  ${vectorScore} AS vector_score, ${textScore} AS text_score
           FROM (${union}) AS c JOIN memories m ON m.id = c.id)
         SELECT *, greatest(${fused}, 0) AS score FROM scored
         ORDER BY score DESC, created_at DESC LIMIT $${values.push(params.k)}`,
        values
      )
      return rows.map((row) => ({
        ...toMemory(row),
        score: Number(row.score),
        vector_score: row.vector_score === null ? null : Number(row.vector_score),
        text_score: row.text_score === null ? null : Number(row.text_score)
      }))
    },

    /** Memories saved while the embedder was unavailable, oldest first. */
    async unembedded(limit: number): Promise<Array<{ id: string; content: string }>> {
      const { rows } = await db.query<{ id: string; content: string }>(
        'SELECT id, content FROM memories WHERE embedding IS NULL ORDER BY created_at LIMIT $1',
        [limit]
      )
      return rows
    },

    async countUnembedded(): Promise<number> {
      const { rows } = await db.query<{ n: number }>('SELECT count(*)::int AS n FROM memories WHERE embedding IS NULL')
      return rows[0]?.n ?? 0
    },

    async setEmbeddings(updates: ReadonlyArray<{ id: string; embedding: number[] }>, embedderId: string): Promise<number> {
      if (updates.length === 0) return 0
      const { rowCount } = await db.query(
        `UPDATE memories AS m SET embedding = u.embedding::vector, embedder = $3
         FROM unnest($1::uuid[], $2::text[]) AS u(id, embedding)
         WHERE m.id = u.id AND m.embedding IS NULL`,
        [updates.map((u) => u.id), updates.map((u) => vectorLiteral(u.embedding)), embedderId]
      )
      return rowCount
    }
  }
}

export type MemoryRepository = ReturnType<typeof createMemoryRepository>

export function encodeCursor(createdAt: string, id: string): string {
  return Buffer.from(JSON.stringify([createdAt, id])).toString('base64url')
}

export function decodeCursor(cursor: string): [string, string] {
  try {
    const value: unknown = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'))
    if (
      Array.isArray(value) && value.length === 2 &&
      typeof value[0] === 'string' && !Number.isNaN(Date.parse(value[0])) &&
      typeof value[1] === 'string' && /^[0-9a-f-]{36}$/i.test(value[1])
    ) {
      return [value[0], value[1]]
    }
  } catch {
    // fall through to the 400 below
  }
  throw validationError('cursor is not one this service gave out')
}
