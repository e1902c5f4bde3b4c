import type { Queryable } from '../db/database.js'
import { vectorParam } from '../db/vector-param.js'
import type { Memory, RecallFilter, RecallMode } from './memory-schemas.js'
import { MEMORY_COLUMNS, toMemory, type MemoryRow } from './memory-store.js'

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

export interface RecallQueryOptions {
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

/** The recall: candidates from the vector index and the full-text index, scored and fused, under every filter. */
export function createRecallQuery(db: Queryable, dimension: number, options: RecallQueryOptions = {}) {
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
    }
  }
}

export type RecallQuery = ReturnType<typeof createRecallQuery>
