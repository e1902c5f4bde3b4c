import type { Queryable } from '../db/database.js'
import { textArrayParam, timestamptzArrayParam, uuidArrayParam } from '../db/array-params.js'
import { vectorArrayParam, vectorTypeOid } from '../db/vector-param.js'
import { validationError } from '../errors.js'
import type { Memory, Role, SaveResult } from './memory-schemas.js'

/**
 * A memory ready to be written: validated, normalised, its ids assigned and its terms computed. This is the one
 * declaration of a memory's fields: the insert's columns (INSERT_COLUMNS), the row read back (MemoryRow) and
 * its column list (MEMORY_COLUMNS) follow from it, and a field added here fails to compile until the insert sends it.
 */
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
  /** Their tsvector literal, when it was made ahead (with the terms, off the event loop for a long text). */
  search_vector?: string
  embedding: number[] | null
  embedder: string | null
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

export interface NamespaceCounts {
  namespace: string
  count: number
  roles: Partial<Record<Role, number>>
  last_memory_at: string
}

export interface SessionSummary {
  session_id: string
  count: number
  first_at: string
  last_at: string
}

/** What to_tsvector keeps of a lexeme's positions: each at most 16,383, and the first 255 (MAXNUMPOS - 1) of them. */
const MAX_TSVECTOR_POSITION = 16_383
const MAX_POSITIONS_PER_LEXEME = 255

/**
 * The tsvector that `to_tsvector('simple', searchTerms)` gives, as a literal Postgres only has to read: each term
 * with its positions. Parsing the text with to_tsvector was 12-18% of Postgres's CPU per saved memory, for terms
 * Sage's tokenizer had already split (letters and digits only, see memory-service.ts); a test holds the two equal.
 */
export function tsvectorLiteral(searchTerms: string): string {
  // A term seen once (most of them) keeps its one position as a number: no array for it.
  const positions = new Map<string, number | number[]>()
  let position = 0
  for (let start = 0; start <= searchTerms.length;) {
    let end = searchTerms.indexOf(' ', start)
    if (end === -1) end = searchTerms.length
    if (end > start) {
      const term = searchTerms.slice(start, end)
      position = Math.min(position + 1, MAX_TSVECTOR_POSITION)
      const seen = positions.get(term)
      if (seen === undefined) positions.set(term, position)
      else if (typeof seen === 'number') {
        if (seen !== position) positions.set(term, [seen, position])
      } else if (seen.length < MAX_POSITIONS_PER_LEXEME && seen[seen.length - 1] !== position) seen.push(position)
    }
    start = end + 1
  }
  // Joined, not appended: a string grown by += is a rope that writing it into the query parameter must flatten.
  const lexemes = new Array<string>(positions.size)
  let index = 0
  for (const [term, at] of positions) {
    const quoted = term.includes("'") || term.includes('\\') ? term.replaceAll('\\', '\\\\').replaceAll("'", "''") : term
    lexemes[index++] = `'${quoted}':${typeof at === 'number' ? at : at.join(',')}`
  }
  return lexemes.join(' ')
}

/**
 * A delete first locks the memories' backlog entries, in a statement of its own: an indexing round that holds one
 * is waited for, and the delete that follows, with a fresh snapshot, sees (and removes) the vector it inserted.
 * Rounds skip the entries a delete holds (SKIP LOCKED). Both lock the backlog before anything else: no deadlock.
 */
const AWAIT_INDEXING_OF_ONE = 'SELECT id FROM vector_backlog WHERE id = $1 FOR UPDATE'
const AWAIT_INDEXING_OF_MANY = 'SELECT b.id FROM vector_backlog b JOIN memories m ON m.id = b.id WHERE m.namespace = $1'

/** For a statement whose CTE `gone` returns the ids of deleted memories: their vectors go in the same statement. */
const DELETE_VECTORS_OF_GONE = `gone_listed AS (DELETE FROM vector_backlog WHERE id IN (SELECT id FROM gone)),
         gone_indexed AS (DELETE FROM memory_vectors WHERE id IN (SELECT id FROM gone))`

/** The fields a memory is read back with (GET, list, recall), in the API's order. */
const READ_FIELDS = ['id', 'namespace', 'session_id', 'role', 'content', 'metadata', 'tags', 'source_id', 'created_at'] as const satisfies ReadonlyArray<keyof NewMemory>

export const MEMORY_COLUMNS = READ_FIELDS.join(', ')

/** A row of `SELECT ${MEMORY_COLUMNS}`: the stores give timestamps as Date (pg) or string. */
export type MemoryRow = Omit<Pick<NewMemory, (typeof READ_FIELDS)[number]>, 'created_at'> & { created_at: Date | string }

interface InsertColumn {
  /** The element type of the unnest() array the column's values arrive in. */
  type: string
  /** What the column is set to from the unnested value `u.<field>`, when not the value itself. */
  value?: string
  param(memories: readonly NewMemory[], vectorOid: number): unknown
}

/** How each field of NewMemory is sent and stored; keyed by the fields, so none can be left out. */
const INSERT_COLUMNS = {
  id: { type: 'uuid', param: (ms) => uuidArrayParam(ms.map((m) => m.id)) },
  namespace: { type: 'text', param: (ms) => textArrayParam(ms.map((m) => m.namespace)) },
  session_id: { type: 'text', param: (ms) => textArrayParam(ms.map((m) => m.session_id)) },
  role: { type: 'text', param: (ms) => textArrayParam(ms.map((m) => m.role)) },
  content: { type: 'text', param: (ms) => textArrayParam(ms.map((m) => m.content)) },
  metadata: { type: 'text', value: 'u.metadata::jsonb', param: (ms) => textArrayParam(ms.map((m) => JSON.stringify(m.metadata))) },
  tags: { type: 'text', value: 'ARRAY(SELECT jsonb_array_elements_text(u.tags::jsonb))', param: (ms) => textArrayParam(ms.map((m) => JSON.stringify(m.tags))) },
  source_id: { type: 'text', param: (ms) => textArrayParam(ms.map((m) => m.source_id)) },
  idempotency_key: { type: 'text', param: (ms) => textArrayParam(ms.map((m) => m.idempotency_key)) },
  created_at: { type: 'timestamptz', param: (ms) => timestamptzArrayParam(ms.map((m) => m.created_at)) },
  // The terms go in as the tsvector literal Postgres only has to read (tsvectorLiteral), made ahead when it was.
  search_terms: { type: 'text', value: 'u.search_terms::tsvector', param: (ms) => textArrayParam(ms.map((m) => m.search_vector ?? tsvectorLiteral(m.search_terms))) },
  embedding: { type: 'vector', param: (ms, vectorOid) => vectorArrayParam(ms.map((m) => m.embedding), vectorOid) },
  embedder: { type: 'text', param: (ms) => textArrayParam(ms.map((m) => (m.embedding ? m.embedder : null))) }
} satisfies Record<Exclude<keyof NewMemory, 'search_vector'>, InsertColumn>

const INSERTED = Object.entries(INSERT_COLUMNS) as Array<[string, InsertColumn]>
const INSERT_FIELD_LIST = INSERTED.map(([field]) => field).join(', ')

/** One statement: the memories and their places in the vector backlog (see migrations/003) are written together. */
const INSERT_MEMORIES = `WITH inserted AS (
  INSERT INTO memories (${INSERT_FIELD_LIST})
  SELECT ${INSERTED.map(([field, column]) => column.value ?? `u.${field}`).join(', ')}
  FROM unnest(${INSERTED.map(([, column], i) => `$${i + 1}::${column.type}[]`).join(', ')}) AS u(${INSERT_FIELD_LIST})
  ON CONFLICT DO NOTHING
  RETURNING id, embedding IS NOT NULL AS embedded),
  listed AS (INSERT INTO vector_backlog (id) SELECT id FROM inserted WHERE embedded)
  SELECT id FROM inserted`

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

/**
 * Content one INSERT statement carries at most (a memory longer than that goes alone): PGlite runs a statement on
 * the event loop, and pieces let it turn in between the statements of one large batch.
 */
const INSERT_CHUNK_CHARS = 200_000

function chunkByContent(memories: readonly NewMemory[]): NewMemory[][] {
  const chunks: NewMemory[][] = [[]]
  let chars = 0
  for (const memory of memories) {
    if (chars + memory.content.length > INSERT_CHUNK_CHARS && chunks.at(-1)!.length > 0) {
      chunks.push([])
      chars = 0
    }
    chunks.at(-1)!.push(memory)
    chars += memory.content.length
  }
  return chunks
}

/** The memories table's reads and writes, parameterised, written once for Postgres and PGlite. */
export function createMemoryStore(db: Queryable) {
  let knownVectorOid: number | undefined
  /**
   * The vector type's oid, which a vector[] parameter names; read once, through `via`. Only the answer is shared,
   * not a read in flight: inside a PGlite transaction, a read on the store itself would wait for it to end.
   */
  const vectorOid = async (via: Queryable = db): Promise<number> => (knownVectorOid ??= await vectorTypeOid((sql) => via.query(sql)))

  /** One INSERT statement for memories whose content fits a chunk (see chunkByContent). */
  async function insertChunk(memories: readonly NewMemory[], tx: Queryable): Promise<SaveResult[]> {
    const oid = await vectorOid(tx)
    const inserted = await tx.query<{ id: string }>(INSERT_MEMORIES, INSERTED.map(([, column]) => column.param(memories, oid)), { prepare: true })
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
}

  return {
    /**
     * Inserts the memories that are new and finds the first ids of those that are not (same source_id
     * or idempotency key in the namespace). Results follow input order. Pass a transaction handle to
     * make it part of a larger all-or-nothing write.
     */
    async insertMany(memories: readonly NewMemory[], tx: Queryable = db): Promise<SaveResult[]> {
      if (memories.length === 0) return []
      const chunks = chunkByContent(memories)
      if (chunks.length === 1) return insertChunk(memories, tx)
      const results: SaveResult[] = []
      for (const chunk of chunks) results.push(...(await insertChunk(chunk, tx)))
      return results
    },

    /** The stored id of each memory whose namespace and Idempotency-Key are already saved, keyed `namespace` NUL `key`. */
    async idsByIdempotencyKey(memories: ReadonlyArray<{ namespace: string; idempotency_key: string | null }>): Promise<Map<string, string>> {
      const keyed = memories.filter((m) => m.idempotency_key !== null)
      const found = new Map<string, string>()
      if (keyed.length === 0) return found
      const { rows } = await db.query<{ id: string; namespace: string; idempotency_key: string }>(
        `SELECT id, namespace, idempotency_key FROM memories WHERE (namespace, idempotency_key) IN (SELECT * FROM unnest($1::text[], $2::text[]))`,
        [keyed.map((m) => m.namespace), keyed.map((m) => m.idempotency_key)]
      )
      for (const row of rows) found.set(`${row.namespace}\u0000${row.idempotency_key}`, row.id)
      return found
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
      await tx.query(AWAIT_INDEXING_OF_ONE, [id])
      const { rows } = await tx.query<{ namespace: string }>(
        `WITH gone AS (DELETE FROM memories WHERE id = $1 RETURNING id, namespace), ${DELETE_VECTORS_OF_GONE}
         SELECT namespace FROM gone`,
        [id]
      )
      return rows[0]?.namespace
    },

    /** The namespace of one memory, its row locked until the transaction `tx` ends (check, then delete). */
    async lockNamespaceOf(id: string, tx: Queryable): Promise<string | undefined> {
      const { rows } = await tx.query<{ namespace: string }>('SELECT namespace FROM memories WHERE id = $1 FOR UPDATE', [id])
      return rows[0]?.namespace
    },

    async deleteMany(namespace: string, sessionId?: string, tx: Queryable = db): Promise<number> {
      const session = sessionId === undefined ? '' : 'AND m.session_id = $2'
      await tx.query(`${AWAIT_INDEXING_OF_MANY} ${session} FOR UPDATE OF b`, sessionId === undefined ? [namespace] : [namespace, sessionId])
      const { rows } = await tx.query<{ n: number }>(
        `WITH gone AS (DELETE FROM memories WHERE namespace = $1 ${sessionId === undefined ? '' : 'AND session_id = $2'} RETURNING id),
         ${DELETE_VECTORS_OF_GONE}
         SELECT count(*)::int AS n FROM gone`,
        sessionId === undefined ? [namespace] : [namespace, sessionId]
      )
      return rows[0]?.n ?? 0
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

    /** Every namespace with its memories counted by role and its newest memory's time (one pass over the table). */
    async namespaces(): Promise<NamespaceCounts[]> {
      const { rows } = await db.query<{ namespace: string; role: Role; count: number; last_at: Date | string }>(
        'SELECT namespace, role, count(*)::int AS count, max(created_at) AS last_at FROM memories GROUP BY namespace, role'
      )
      const byNamespace = new Map<string, NamespaceCounts>()
      for (const row of rows) {
        let counts = byNamespace.get(row.namespace)
        if (!counts) byNamespace.set(row.namespace, (counts = { namespace: row.namespace, count: 0, roles: {}, last_memory_at: toIso(row.last_at) }))
        counts.count += row.count
        counts.roles[row.role] = row.count
        if (toIso(row.last_at) > counts.last_memory_at) counts.last_memory_at = toIso(row.last_at)
      }
      return [...byNamespace.values()]
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
      const { rows } = await db.query<{ n: number }>(
        `WITH updated AS (
           UPDATE memories AS m SET embedding = u.embedding, embedder = $3
           FROM unnest($1::uuid[], $2::vector[]) AS u(id, embedding)
           WHERE m.id = u.id AND m.embedding IS NULL
           RETURNING m.id),
         listed AS (INSERT INTO vector_backlog (id) SELECT id FROM updated ON CONFLICT DO NOTHING)
         SELECT count(*)::int AS n FROM updated`,
        [updates.map((u) => u.id), vectorArrayParam(updates.map((u) => u.embedding), await vectorOid()), embedderId]
      )
      return rows[0]?.n ?? 0
    }
  }
}

export type MemoryStore = ReturnType<typeof createMemoryStore>

export function encodeCursor(createdAt: string, id: string): string {
  return Buffer.from(JSON.stringify([createdAt, id])).toString('base64url')
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i

/** A time as encodeCursor writes it (toISOString) within the years a memory may have, so the database never sees another. */
function isCursorTime(value: unknown): value is string {
  if (typeof value !== 'string' || !/^\d{4}-/.test(value)) return false
  const time = new Date(value)
  return !Number.isNaN(time.getTime()) && time.toISOString() === value && time.getUTCFullYear() >= 1
}

/**
 * A cursor's time and id, checked to be exactly what this service hands out (a forged one is a 400, never a
 * database error); `isId` says what an id of the listed table looks like (a uuid by default).
 */
export function decodeCursor(cursor: string, isId: (id: string) => boolean = (id) => UUID.test(id)): [string, string] {
  try {
    const value: unknown = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'))
    if (Array.isArray(value) && value.length === 2 && isCursorTime(value[0]) && typeof value[1] === 'string' && isId(value[1])) {
      return [value[0], value[1]]
    }
  } catch {
    // fall through to the 400 below
  }
  throw validationError('cursor is not one this service gave out')
}
