import type { Queryable } from '../db/database.js'
import { vectorParam } from '../db/vector-param.js'
import type { Memory, RecallFilter, RecallMode } from './memory-schemas.js'
import { MEMORY_COLUMNS, toMemory, type MemoryRow } from './memory-store.js'
import { BM25_B, BM25_K1 } from './recall-ranking.js'

export interface RecallParams {
  namespace: string
  sessionId?: string | null
  mode: RecallMode
  /** Results asked for. */
  k: number
  /** Candidates each source brings at most. */
  candidates: number
  filter?: RecallFilter
  /** Query vector; absent in text mode or when the embedder could not be reached (text recall still works). */
  vector?: number[]
  /** The query's distinct terms, from the shared tokenizer. */
  terms: string[]
  /** Each term's BM25 weight in the namespace, in the order of `terms`. */
  weights: number[]
  /** The namespace's mean memory length in distinct terms, for BM25's length normalisation. */
  averageLength: number
  /**
   * Indexes of the terms few enough memories hold that every one of them is scored; the others only add to the
   * scores of the candidates, which the newest memories holding them complete.
   */
  selective: number[]
  /** Compare every matching vector with the query (few match) instead of walking the HNSW graph. */
  exact: boolean
}

export interface CandidateRow extends Memory {
  /** Cosine similarity to the query; null without a query vector or for a memory not embedded yet. */
  vector_score: number | null
  /** Indexes into `terms` of the query terms the memory holds. */
  matched: number[]
  /** The memory's distinct terms. */
  length: number
}

/**
 * For common terms, this many of the namespace's newest memories are read, in order, and those holding any scored:
 * finding the memories that hold them among tens of thousands (a word in a third of 100,000) is what made recall slow.
 */
export const COMMON_TERM_SCAN = 2_000

/** The recall's filters over the memories read as `m`, their values appended to `values`; the namespace always. */
function recallConditions(params: Pick<RecallParams, 'namespace' | 'sessionId' | 'filter'>, values: unknown[]): string {
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

/** Whether the recall narrows the namespace at all (a session, a role, tags, metadata, a time range). */
export function isFiltered(params: Pick<RecallParams, 'sessionId' | 'filter'>): boolean {
  return recallConditions({ namespace: '', ...params }, []).includes(' AND ')
}

/** Terms match memory-service.ts SAFE_TERM (lowercase letters, other letters, digits): safe to quote as tsquery lexemes. */
const tsqueryOf = (terms: readonly string[], operator: ' | ' | ' & ') => terms.map((term) => `'${term}'`).join(operator)

/** A number as an SQL literal. */
const sqlNumber = (n: number) => (Number.isFinite(n) ? n.toPrecision(12) : '0')

/** The recall SQL: candidates from the vector index and the full-text index, with what ranking needs of each. */
export function createRecallQuery(db: Queryable, dimension: number) {
  const dims = Math.trunc(dimension)
  const vectorType = `vector(${dims})`
  const embeddingExpr = `(m.embedding::${vectorType})`

  /** The memory `m` as a candidate: its columns, and the query terms it holds as indexes into `termParams`. */
  const candidateColumns = (termParams: readonly string[], vectorScore: string) => {
    const matched = termParams.length === 0 ? `'{}'::int[]`
      : `array_remove(ARRAY[${termParams.map((term, i) => `CASE WHEN m.search_terms @@ ${term} THEN ${i} END`).join(', ')}], NULL)`
    return `${MEMORY_COLUMNS.split(', ').map((column) => `m.${column}`).join(', ')},
                 ${vectorScore} AS vector_score, ${matched} AS matched, length(m.search_terms) AS length`
  }
  const toCandidate = (row: MemoryRow & { vector_score: number | null; matched: number[]; length: number }): CandidateRow => ({
    ...toMemory(row),
    vector_score: row.vector_score === null ? null : Number(row.vector_score),
    matched: row.matched ?? [],
    length: Number(row.length)
  })

  return {
    /**
     * How many memories match the recall's conditions, counting at most `cap + 1` of them: whether an exact
     * search over them costs less than a walk through the graph.
     */
    async countMatching(params: Pick<RecallParams, 'namespace' | 'sessionId' | 'filter'>, cap: number): Promise<number> {
      const values: unknown[] = []
      const conditions = recallConditions(params, values)
      const { rows } = await db.query<{ n: number }>(
        `SELECT count(*)::int AS n FROM (SELECT 1 FROM memories m WHERE ${conditions} LIMIT ${Math.trunc(cap) + 1}) AS capped`,
        values
      )
      return rows[0]?.n ?? 0
    },

    /**
     * Candidates from the vector k-NN (HNSW, iterative scan so filters cannot starve it, or exact when few memories
     * match) and from the full-text index (BM25), with both sides' evidence for every candidate. The two sides are
     * two statements sent at once: on separate connections Postgres runs them side by side, so a recall takes the
     * longer of the two, not their sum. Every condition applies to both sides; the namespace always.
     */
    async candidates(params: RecallParams): Promise<CandidateRow[]> {
      const useVector = params.mode !== 'text' && params.vector !== undefined
      if (params.mode === 'vector' && !useVector) return []
      // Text candidates serve the vector mode too: ranked by exact distance, they catch neighbours the graph missed
      // (an exact search misses none).
      const useText = params.terms.length > 0 && !(params.mode === 'vector' && params.exact)
      if (!useVector && !useText) return []
      const limit = Math.trunc(params.candidates)

      /**
       * One side's statement: `sources` (CTEs over `$1…` of `values`) list candidate ids as `c`; each candidate comes
       * with its distance to the query vector (`q`, empty in text mode) and the query terms it holds.
       */
      const statement = (build: (values: unknown[], conditions: string, q: string, bm25: (alias: string) => string) => { sources: string; distance?: string }) => {
        const values: unknown[] = []
        const conditions = recallConditions(params, values)
        const q = useVector ? `$${values.push(vectorParam(params.vector!))}::${vectorType}` : ''
        const termParams = params.terms.map((term) => `$${values.push(`'${term}'`)}::tsquery`)
        /** BM25 with each term counted once (recall-ranking.ts textScore, without its constant factors), to order by. */
        const bm25 = (alias: string) => {
          const held = termParams.map((term, i) => `CASE WHEN ${alias}.search_terms @@ ${term} THEN ${sqlNumber(params.weights[i] ?? 0)} ELSE 0 END`).join(' + ')
          const norm = `(1 + ${BM25_K1} * (1 - ${BM25_B} + ${BM25_B} * length(${alias}.search_terms) / ${sqlNumber(Math.max(params.averageLength, 1))}))`
          return `((${held || '0'})::float8 / ${norm})`
        }
        const { sources, distance } = build(values, conditions, q, bm25)
        const sql = `WITH ${sources}
          SELECT ${candidateColumns(termParams, distance === undefined ? 'NULL::float8' : `1 - (${distance})`)}
          FROM c JOIN memories m ON m.id = c.id`
        return db.query<MemoryRow & { vector_score: number | null; matched: number[]; length: number }>(sql, values)
      }

      const sides: Array<ReturnType<typeof statement>> = []
      if (useVector && params.exact) {
        // Few memories match: every vector of them, graph or backlog, compared with the query.
        sides.push(statement((values, conditions, q) => ({
          sources: `c AS MATERIALIZED (
            SELECT m.id, ${embeddingExpr} <=> ${q} AS distance FROM memories m
            WHERE ${conditions} AND vector_dims(m.embedding) = ${dims}
            ORDER BY 2 LIMIT ${limit})`,
          distance: 'c.distance'
        })))
      } else if (useVector) {
        // The graph and, exactly, the vectors still waiting to enter it; the distance found is the score's.
        sides.push(statement((values, conditions, q) => ({
          sources: `c AS MATERIALIZED (
            (SELECT mv.id, (mv.embedding::${vectorType}) <=> ${q} AS distance
             FROM memory_vectors mv JOIN memories m ON m.id = mv.id
             WHERE ${conditions} AND vector_dims(mv.embedding) = ${dims}
             ORDER BY (mv.embedding::${vectorType}) <=> ${q} LIMIT ${limit})
            UNION ALL
            (SELECT m.id, ${embeddingExpr} <=> ${q} AS distance
             FROM vector_backlog b JOIN memories m ON m.id = b.id
             WHERE ${conditions} AND vector_dims(m.embedding) = ${dims}
             ORDER BY ${embeddingExpr} <=> ${q} LIMIT ${limit}))`,
          distance: 'c.distance'
        })))
      }
      if (useText) {
        const selective = params.selective.map((i) => params.terms[i]!).filter((term) => term !== undefined)
        const common = params.terms.filter((_, i) => !params.selective.includes(i))
        sides.push(statement((values, conditions, q, bm25) => {
          const parts: string[] = []
          let fallback: string | undefined
          if (selective.length > 0) {
            // Every memory holding a selective term, ranked by BM25: the namespace's statistics bound their number.
            const anySelective = `to_tsquery('simple', $${values.push(tsqueryOf(selective, ' | '))})`
            parts.push(`SELECT m.id FROM memories m WHERE ${conditions} AND m.search_terms @@ ${anySelective}
              ORDER BY ${bm25('m')} DESC, m.created_at DESC LIMIT ${limit}`)
          }
          if (common.length > 0) {
            // Common terms: the newest memories are scored, a fixed stretch of them read in the order of an index
            // whatever the terms' frequencies and the filters (those the index cannot serve are checked after).
            const anyCommon = `to_tsquery('simple', $${values.push(tsqueryOf(common, ' | '))})`
            const inOrder = recallConditions({ namespace: params.namespace, sessionId: params.sessionId, filter: { since: params.filter?.since, until: params.filter?.until } }, values)
            parts.push(`SELECT m.id FROM (
                SELECT m.id, m.namespace, m.session_id, m.role, m.tags, m.metadata, m.created_at, m.search_terms FROM memories m
                WHERE ${inOrder} ORDER BY m.created_at DESC LIMIT ${COMMON_TERM_SCAN}) AS m
              WHERE ${conditions} AND m.search_terms @@ ${anyCommon}
              ORDER BY ${bm25('m')} DESC, m.created_at DESC LIMIT ${limit}`)
            // Fewer than k found (a narrow filter, a typo): the newest memories holding any common term as well.
            fallback = `SELECT m.id FROM memories m WHERE ${conditions} AND m.search_terms @@ ${anyCommon}
              AND (SELECT count(*) FROM found) < ${Math.trunc(params.k)}
              ORDER BY m.created_at DESC LIMIT ${limit}`
          }
          const union = parts.map((part) => `(${part})`).join(' UNION ')
          return {
            sources: fallback === undefined ? `c AS MATERIALIZED (${union})` : `found AS MATERIALIZED (${union}), c AS (SELECT id FROM found UNION (${fallback}))`,
            // A vector saved under another dimension (mid re-embed) has no distance to this query.
            distance: useVector ? `CASE WHEN vector_dims(m.embedding) = ${dims} THEN ${embeddingExpr} <=> ${q} END` : undefined
          }
        }))
      }

      const byId = new Map<string, CandidateRow>()
      for (const { rows } of await Promise.all(sides)) {
        for (const row of rows) {
          // A memory both sides found is the same memory with the same evidence; the first reading stands.
          if (byId.has(row.id)) continue
          byId.set(row.id, toCandidate(row))
        }
      }
      return [...byId.values()]
    },

    /**
     * What came next in each hit's session: the memory saved right after it there (an answer after its question, the
     * next turn of a conversation), under the recall's conditions. Keyed by the hit's id.
     */
    async successors(params: RecallParams, hits: ReadonlyArray<Pick<Memory, 'id' | 'session_id' | 'created_at'>>): Promise<Map<string, CandidateRow>> {
      const inSession = hits.filter((hit) => hit.session_id !== null)
      if (inSession.length === 0) return new Map()
      const values: unknown[] = []
      const conditions = recallConditions(params, values)
      const useVector = params.mode !== 'text' && params.vector !== undefined
      const q = useVector ? `$${values.push(vectorParam(params.vector!))}::${vectorType}` : ''
      const termParams = params.terms.map((term) => `$${values.push(`'${term}'`)}::tsquery`)
      const ids = `$${values.push(inSession.map((hit) => hit.id))}::uuid[]`
      const sessions = `$${values.push(inSession.map((hit) => hit.session_id))}::text[]`
      const times = `$${values.push(inSession.map((hit) => hit.created_at))}::timestamptz[]`
      const distance = useVector ? `CASE WHEN vector_dims(m.embedding) = ${dims} THEN 1 - (${embeddingExpr} <=> ${q}) END` : 'NULL::float8'
      const { rows } = await db.query<MemoryRow & { vector_score: number | null; matched: number[]; length: number; after: string }>(
        `SELECT h.id::text AS after, ${candidateColumns(termParams, distance)}
         FROM unnest(${ids}, ${sessions}, ${times}) AS h(id, session_id, created_at)
         CROSS JOIN LATERAL (
           SELECT m.* FROM memories m
           WHERE ${conditions} AND m.session_id = h.session_id AND (m.created_at, m.id) > (h.created_at, h.id)
           ORDER BY m.created_at, m.id LIMIT 1) AS m`,
        values
      )
      return new Map(rows.map((row) => [row.after, toCandidate(row)]))
    }
  }
}

export type RecallQuery = ReturnType<typeof createRecallQuery>
