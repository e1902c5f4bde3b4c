import type { Queryable } from '../db/database.js'
import { textArrayParam, timestamptzArrayParam, uuidArrayParam } from '../db/array-params.js'
import { vectorArrayParam, vectorParam, vectorTypeOid } from '../db/vector-param.js'
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

/**
 * A query term found in more memories than this does not bring text candidates on its own: ranking every match
 * of a word in a third of 100,000 memories took 150-230 ms (ts_rank costs about 3 µs a match). Its matches still
 * count in every candidate's score.
 */
export const SELECTIVE_TERM_ROWS = 500
/** How long recalls use one reading of the term statistics; ANALYZE (autovacuum) refreshes them far less often. */
const TERM_STATISTICS_TTL_MS = 60_000

interface TermStatistics {
  /** The table's estimated row count. */
  rows: number
  /** The share of rows holding each of the most common terms. */
  shares: Map<string, number>
  loadedAt: number
}

/** Terms match memory-service.ts SAFE_TERM (lowercase letters, other letters, digits): safe to quote as tsquery lexemes. */
const tsqueryOf = (terms: readonly string[], operator: ' | ' | ' & ') => terms.map((term) => `'${term}'`).join(operator)

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

/** The recall's filters over the memories read as `m`, their values appended to `values`; the namespace always. */
function recallConditions(params: RecallParams, values: unknown[]): string {
  const where = [`m.namespace = $${values.push(params.namespace)}`]
  const f = params.filter ?? {}
  if (params.sessionId) where.push(`m.session_id = $${values.push(params.sessionId)}`)
  if (f.exclude_session_id) where.push(`m.session_id IS DISTINCT FROM $${values.push(f.exclude_session_id)}`)
  if (f.role?.length) where.push(`m.role = ANY($${values.push(f.role)}::text[])`)
  if (f.tags?.length) where.push(`m.tags @> $${values.push(f.tags)}::text[]`)
  if (f.metadata && Object.keys(f.metadata).length > 0) where.push(`m.metadata @> $${values.push(JSON.stringify(f.metadata))}::jsonb`)
  if (f.since) where.push(`m.created_at >= $${values.push(f.since)}::timestamptz`)
  if (f.until) where.push(`m.created_at <= $${values.push(f.until)}::timestamptz`)
  return where.join(' AND ')
}

export interface MemoryRepositoryOptions {
  /**
   * A namespace with at most this many memories is searched exactly instead of through the graph (0: never).
   * The graph holds every namespace's vectors, and a filtered HNSW scan walks past the others' to find a small
   * namespace's own: measured beside 66,000 other memories, a namespace of 600 took 74-83 ms through the graph.
   */
  exactSearchMaxRows?: number
}

/** How long a namespace is taken to be small (or not) before it is counted again. */
const NAMESPACE_SIZE_TTL_MS = 60_000
/** Namespaces whose size is remembered at once; past this the memory starts over. */
const NAMESPACE_SIZE_ENTRIES = 10_000

/** All SQL over the memories table lives here, parameterised, written once for Postgres and PGlite. */
export function createMemoryRepository(db: Queryable, dimension: number, options: MemoryRepositoryOptions = {}) {
  const dims = Math.trunc(dimension)
  const exactSearchMaxRows = Math.max(0, Math.trunc(options.exactSearchMaxRows ?? 0))
  const namespaceSizes = new Map<string, { small: boolean; at: number }>()

  /** Whether `namespace` holds few enough memories to search exactly; counts at most one past the limit. */
  async function isSmallNamespace(namespace: string): Promise<boolean> {
    if (exactSearchMaxRows === 0) return false
    const known = namespaceSizes.get(namespace)
    if (known && Date.now() - known.at < NAMESPACE_SIZE_TTL_MS) return known.small
    const { rows } = await db.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM (SELECT 1 FROM memories WHERE namespace = $1 LIMIT ${exactSearchMaxRows + 1}) AS capped`,
      [namespace]
    )
    const small = (rows[0]?.n ?? 0) <= exactSearchMaxRows
    if (namespaceSizes.size >= NAMESPACE_SIZE_ENTRIES) namespaceSizes.clear()
    namespaceSizes.set(namespace, { small, at: Date.now() })
    return small
  }
  const vectorType = `vector(${dims})`
  let knownVectorOid: number | undefined
  /**
   * The vector type's oid, which a vector[] parameter names; read once, through `via`. Only the answer is shared,
   * not a read in flight: inside a PGlite transaction, a read on the store itself would wait for it to end.
   */
  const vectorOid = async (via: Queryable = db): Promise<number> => (knownVectorOid ??= await vectorTypeOid((sql) => via.query(sql)))
  const embeddingExpr = `(m.embedding::${vectorType})`

  let termStatistics: TermStatistics | undefined
  let termStatisticsLoading: Promise<TermStatistics> | undefined

  /** Postgres's own statistics of the search terms (ANALYZE keeps the most common lexemes and their shares). */
  async function loadTermStatistics(): Promise<TermStatistics> {
    const { rows } = await db.query<{ elems: string[] | null; freqs: number[] | null; reltuples: number }>(
      `SELECT s.most_common_elems::text::text[] AS elems, s.most_common_elem_freqs::float8[] AS freqs,
              greatest(c.reltuples, 0)::float8 AS reltuples
       FROM pg_class c JOIN pg_stats s ON s.schemaname = current_schema() AND s.tablename = c.relname
       WHERE c.oid = 'memories'::regclass AND s.attname = 'search_terms'`
    )
    const row = rows[0]
    const shares = new Map<string, number>()
    row?.elems?.forEach((term, i) => shares.set(term, Number(row.freqs?.[i] ?? 0)))
    return { rows: Number(row?.reltuples ?? 0), shares, loadedAt: Date.now() }
  }

  async function currentTermStatistics(): Promise<TermStatistics> {
    if (termStatistics && Date.now() - termStatistics.loadedAt < TERM_STATISTICS_TTL_MS) return termStatistics
    termStatisticsLoading ??= loadTermStatistics()
      .then((loaded) => (termStatistics = loaded))
      .finally(() => { termStatisticsLoading = undefined })
    // A stale view is fine while the fresh one loads; the first recall waits for it.
    return termStatistics ?? termStatisticsLoading
  }

  /** Terms whose memories are few enough to rank all of them, and the rest; without statistics, every term is selective. */
  async function splitBySelectivity(terms: readonly string[]): Promise<{ selective: string[]; common: string[] }> {
    const stats = await currentTermStatistics()
    const selective: string[] = []
    const common: string[] = []
    for (const term of terms) ((stats.shares.get(term) ?? 0) * stats.rows > SELECTIVE_TERM_ROWS ? common : selective).push(term)
    return { selective, common }
  }

  return {
    /**
     * Inserts the memories that are new and finds the first ids of those that are not (same source_id
     * or idempotency key in the namespace). Results follow input order. Pass a transaction handle to
     * make it part of a larger all-or-nothing write.
     */
    async insertMany(memories: readonly NewMemory[], tx: Queryable = db): Promise<SaveResult[]> {
      if (memories.length === 0) return []
      // One statement: the memory and its place in the vector backlog (see migrations/003) are written together.
      const inserted = await tx.query<{ id: string }>(
        `WITH inserted AS (
         INSERT INTO memories (id, namespace, session_id, role, content, metadata, tags, source_id, idempotency_key,
                               created_at, search_terms, embedding, embedder)
         SELECT u.id, u.namespace, u.session_id, u.role, u.content, u.metadata::jsonb,
                ARRAY(SELECT jsonb_array_elements_text(u.tags::jsonb)), u.source_id, u.idempotency_key,
                u.created_at, u.terms::tsvector, u.embedding, u.embedder
         FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[],
                     $9::text[], $10::timestamptz[], $11::text[], $12::vector[], $13::text[])
              AS u(id, namespace, session_id, role, content, metadata, tags, source_id, idempotency_key,
                   created_at, terms, embedding, embedder)
         ON CONFLICT DO NOTHING
         RETURNING id, embedding IS NOT NULL AS embedded),
         listed AS (INSERT INTO vector_backlog (id) SELECT id FROM inserted WHERE embedded)
         SELECT id FROM inserted`,
        [
          uuidArrayParam(memories.map((m) => m.id)),
          textArrayParam(memories.map((m) => m.namespace)),
          textArrayParam(memories.map((m) => m.session_id)),
          textArrayParam(memories.map((m) => m.role)),
          textArrayParam(memories.map((m) => m.content)),
          textArrayParam(memories.map((m) => JSON.stringify(m.metadata))),
          textArrayParam(memories.map((m) => JSON.stringify(m.tags))),
          textArrayParam(memories.map((m) => m.source_id)),
          textArrayParam(memories.map((m) => m.idempotency_key)),
          timestamptzArrayParam(memories.map((m) => m.created_at)),
          textArrayParam(memories.map((m) => tsvectorLiteral(m.search_terms))),
          vectorArrayParam(memories.map((m) => m.embedding), await vectorOid(tx)),
          textArrayParam(memories.map((m) => (m.embedding ? m.embedder : null)))
        ],
        { prepare: true }
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

    /**
     * Candidates from the vector k-NN (HNSW, iterative scan so filters cannot starve it) and from the full-text
     * index, both scores for every candidate, fused into one relevance. The two sides are two statements sent at
     * once: on separate connections Postgres runs them side by side, so a recall takes the longer of the two, not
     * their sum. Every condition applies to both sides; the namespace always.
     */
    async recall(params: RecallParams): Promise<RecallRow[]> {
      const useVector = params.mode !== 'text' && params.vector !== undefined
      if (params.mode === 'vector' && !useVector) return []
      // Text candidates serve the vector mode too: ranked by exact distance, they catch neighbours the graph missed.
      const useTextCandidates = params.terms.length > 0
      if (!useVector && !useTextCandidates) return []
      const candidates = Math.min(Math.max(params.k * 4, 40), 200)
      const scoreText = params.mode !== 'vector' && useTextCandidates

      /**
       * One side's statement: `sources` (CTEs over `$1…` of `values`) list candidate ids as `c`; every candidate is
       * scored, by `distance` to the query vector when there is one (`q`, empty in text mode).
       */
      const statement = (build: (values: unknown[], conditions: string, q: string) => { sources: string; distance?: string }) => {
        const values: unknown[] = []
        const conditions = recallConditions(params, values)
        const q = useVector ? `$${values.push(vectorParam(params.vector!))}::${vectorType}` : ''
        const { sources, distance } = build(values, conditions, q)
        const textScore = scoreText
          // Coverage: the share of the query's distinct terms the memory holds (those ts_delete takes out of it).
          ? `(length(m.search_terms) - length(ts_delete(m.search_terms, $${values.push(params.terms)}::text[])))::float8 / ${params.terms.length}`
          : 'NULL::float8'
        const sql = `WITH ${sources}
          SELECT ${MEMORY_COLUMNS.split(', ').map((column) => `m.${column}`).join(', ')},
                 ${distance === undefined ? 'NULL::float8' : `1 - (${distance})`} AS vector_score, ${textScore} AS text_score
          FROM c JOIN memories m ON m.id = c.id`
        return db.query<MemoryRow & { vector_score: number | null; text_score: number | null }>(sql, values)
      }

      // Before either statement is sent: nothing may be awaited between sending them and Promise.all, or a side
      // that fails meanwhile is an unhandled rejection.
      const split = useTextCandidates ? await splitBySelectivity(params.terms) : undefined
      const exact = useVector && (await isSmallNamespace(params.namespace))
      const sides: Array<ReturnType<typeof statement>> = []
      if (exact) {
        // A small namespace: every vector of it, graph or backlog, compared with the query.
        sides.push(statement((values, conditions, q) => ({
          sources: `c AS MATERIALIZED (
            SELECT m.id, ${embeddingExpr} <=> ${q} AS distance FROM memories m
            WHERE ${conditions} AND vector_dims(m.embedding) = ${dims}
            ORDER BY 2 LIMIT ${candidates})`,
          distance: 'c.distance'
        })))
      } else if (useVector) {
        // The graph and, exactly, the vectors still waiting to enter it; the distance found is the score's.
        sides.push(statement((values, conditions, q) => ({
          sources: `c AS MATERIALIZED (
            (SELECT mv.id, (mv.embedding::${vectorType}) <=> ${q} AS distance
             FROM memory_vectors mv JOIN memories m ON m.id = mv.id
             WHERE ${conditions} AND vector_dims(mv.embedding) = ${dims}
             ORDER BY (mv.embedding::${vectorType}) <=> ${q} LIMIT ${candidates})
            UNION ALL
            (SELECT m.id, ${embeddingExpr} <=> ${q} AS distance
             FROM vector_backlog b JOIN memories m ON m.id = b.id
             WHERE ${conditions} AND vector_dims(m.embedding) = ${dims}
             ORDER BY ${embeddingExpr} <=> ${q} LIMIT ${candidates}))`,
          distance: 'c.distance'
        })))
      }
      if (split) {
        const { selective, common } = split
        sides.push(statement((values, conditions, q) => {
          const parts: string[] = []
          if (selective.length > 0) {
            // Ranking a term's every match is what costs; the selective terms bring ranked candidates, and a memory
            // holding none of them holds only words that are in a large share of all memories.
            const anySelective = `to_tsquery('simple', $${values.push(tsqueryOf(selective, ' | '))})`
            // By rank even in vector mode: an exact distance per match (reading each one's vector) cost 15 µs a row,
            // five times ts_rank; the candidates are then ranked by exact distance anyway.
            const anyTerm = `to_tsquery('simple', $${values.push(tsqueryOf(params.terms, ' | '))})`
            parts.push(`SELECT m.id FROM memories m WHERE ${conditions} AND m.search_terms @@ ${anySelective}
              ORDER BY ts_rank(m.search_terms, ${anyTerm}) DESC, m.created_at DESC LIMIT ${candidates}`)
          } else {
            // Every term is common: first the memories holding all of them, newest first.
            const everyTerm = `to_tsquery('simple', $${values.push(tsqueryOf(params.terms, ' & '))})`
            parts.push(`SELECT m.id FROM memories m WHERE ${conditions} AND m.search_terms @@ ${everyTerm}
              ORDER BY m.created_at DESC LIMIT ${candidates}`)
          }
          if (common.length > 0) {
            // The newest holding any common term: matches are dense, so walking the newest rows finds them without
            // ranking tens of thousands. This also answers when the selective terms match nothing (a typo), and in a
            // namespace where a word that is common elsewhere is rare (the statistics are the whole table's).
            const anyCommon = `to_tsquery('simple', $${values.push(tsqueryOf(common, ' | '))})`
            parts.push(`SELECT m.id FROM memories m WHERE ${conditions} AND m.search_terms @@ ${anyCommon}
              ORDER BY m.created_at DESC LIMIT ${candidates}`)
          }
          return {
            sources: `c AS MATERIALIZED (${parts.map((part) => `(${part})`).join(' UNION ')})`,
            // A vector saved under another dimension (mid re-embed) has no distance to this query.
            distance: useVector ? `CASE WHEN vector_dims(m.embedding) = ${dims} THEN ${embeddingExpr} <=> ${q} END` : undefined
          }
        }))
      }

      // Either signal alone can make a memory relevant: fused as a probabilistic OR of the two scores.
      const fuse = (vector: number | null, text: number | null): number =>
        params.mode === 'vector' ? (vector ?? 0) : params.mode === 'text' ? (text ?? 0)
          : 1 - (1 - Math.max(vector ?? 0, 0)) * (1 - (text ?? 0))
      const byId = new Map<string, RecallRow>()
      for (const { rows } of await Promise.all(sides)) {
        for (const row of rows) {
          const vectorScore = row.vector_score === null ? null : Number(row.vector_score)
          if (params.mode === 'vector' && vectorScore === null) continue
          // A memory both sides found is the same memory with the same scores; the first reading stands.
          if (byId.has(row.id)) continue
          const textScore = row.text_score === null ? null : Number(row.text_score)
          byId.set(row.id, { ...toMemory(row), score: Math.max(fuse(vectorScore, textScore), 0), vector_score: vectorScore, text_score: textScore })
        }
      }
      return [...byId.values()]
        .sort((a, b) => b.score - a.score || (a.created_at < b.created_at ? 1 : a.created_at > b.created_at ? -1 : 0))
        .slice(0, params.k)
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
    },

    /**
     * Moves up to `limit` vectors from the backlog into the HNSW-indexed table, in one transaction; replicas
     * share the work (SKIP LOCKED). Answers how many backlog entries it took.
     */
    async indexBacklog(limit: number): Promise<{ taken: number; indexed: number }> {
      const { rows } = await db.query<{ taken: number; indexed: number }>(
        `WITH taken AS (
           -- ARRAY(…) runs the claim once; as IN (…) the planner may rerun it for every backlog row.
           DELETE FROM vector_backlog WHERE id = ANY(ARRAY(SELECT id FROM vector_backlog LIMIT $1 FOR UPDATE SKIP LOCKED))
           RETURNING id),
         indexed AS (
           INSERT INTO memory_vectors (id, embedding)
           SELECT m.id, m.embedding FROM taken JOIN memories m ON m.id = taken.id WHERE m.embedding IS NOT NULL
           ON CONFLICT (id) DO UPDATE SET embedding = EXCLUDED.embedding
           RETURNING id)
         SELECT (SELECT count(*) FROM taken)::int AS taken, (SELECT count(*) FROM indexed)::int AS indexed`,
        [limit]
      )
      return { taken: rows[0]?.taken ?? 0, indexed: rows[0]?.indexed ?? 0 }
    },

    /**
     * Removes vectors whose memory is gone. Deletes wait for indexing rounds (see AWAIT_INDEXING_OF_ONE), but a
     * memory saved while its namespace was being deleted can still race a round; this sweeps what that leaves.
     */
    async sweepOrphanVectors(): Promise<number> {
      const { rowCount } = await db.query('DELETE FROM memory_vectors mv WHERE NOT EXISTS (SELECT 1 FROM memories m WHERE m.id = mv.id)')
      return rowCount
    },

    /** Refreshes the planner's statistics of the tables recall plans over; answers the vectors' estimated count. */
    async analyze(): Promise<number> {
      await db.query('ANALYZE memories, memory_vectors')
      const { rows } = await db.query<{ n: number }>("SELECT greatest(reltuples, 0)::float8 AS n FROM pg_class WHERE oid = 'memory_vectors'::regclass")
      return Number(rows[0]?.n ?? 0)
    },

    /**
     * Housekeeping once the indexer emptied the backlog, for stores no autovacuum looks after (PGlite has none; a
     * Postgres's may lag a bulk import): recalls read the backlog's dead entries and the full-text index's pending
     * list until they are vacuumed or merged (at 100,000 memories: about 1 ms of each recall). Both are quick.
     */
    async tidy(): Promise<void> {
      // SKIP_LOCKED: when another replica or autovacuum is at it already, there is nothing to add.
      await db.query('VACUUM (SKIP_LOCKED) vector_backlog')
      await db.query(
        `SELECT gin_clean_pending_list(c.oid) FROM pg_class c JOIN pg_index i ON i.indexrelid = c.oid
         WHERE i.indrelid = 'memories'::regclass AND c.relam = (SELECT oid FROM pg_am WHERE amname = 'gin')`
      )
    },

    async countVectorBacklog(): Promise<number> {
      const { rows } = await db.query<{ n: number }>('SELECT count(*)::int AS n FROM vector_backlog')
      return rows[0]?.n ?? 0
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
