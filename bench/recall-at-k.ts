import type { Embedder } from '../src/embedder/embedder.js'
import { normalizeText } from '../src/memory/normalize.js'

/** Just enough of pg.Client and PGlite to run the exact search in either. */
export interface SqlClient {
  query(sql: string, params?: unknown[]): Promise<{ rows: unknown[] }>
}

export interface ServiceAnswers {
  query: string
  ids: string[]
}

export interface RecallScore {
  /** Mean over queries of the share of the true top k returned. */
  recall: number
  /** Queries whose answer was complete. */
  perfect: number
}

export interface RecallAtK extends RecallScore {
  k: number
  queries: number
  /** Mean time of one exact (sequential) search, for comparison with the index. */
  exactMs: number
  /**
   * The HNSW index by itself, asked in the store for the same queries (the service's answers also hold the backlog
   * and full-text candidates, ranked by exact distance); a reason instead when it could not be measured.
   */
  graphAlone?: GraphAlone | { skipped: string }
}

export interface GraphAlone extends RecallScore {
  /** Mean time of one graph query. */
  ms: number
  /**
   * Set when the planner's own plan did not take its order from the index (it read the table whole and sorted it,
   * as it may on a table it has no statistics for) and had to be steered onto it.
   */
  forced?: { settings: string; plannersOwn: string }
}

/**
 * The service's own answers to `mode: "vector"`: its candidates are the HNSW graph's, the backlog's (vectors not yet
 * in the graph, searched exactly) and full-text ones, ranked by exact distance.
 */
export async function askService(url: string, namespace: string, queries: readonly string[], k: number): Promise<ServiceAnswers[]> {
  const answers: ServiceAnswers[] = []
  for (const query of queries) {
    const response = await fetch(`${url}/v1/recall`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ query, namespace, mode: 'vector', k })
    })
    const body = (await response.json()) as { results?: Array<{ id: string }> }
    if (response.status !== 200 || !body.results) throw new Error(`recall answered ${response.status} ${JSON.stringify(body).slice(0, 300)}`)
    answers.push({ query, ids: body.results.map((hit) => hit.id) })
  }
  return answers
}

/** The settings the service's own connections use (src/db/pg-database.ts, pglite-database.ts). */
const GRAPH_SETTINGS = ['SET hnsw.ef_search = 100', 'SET hnsw.iterative_scan = relaxed_order']

/**
 * Compares the service's answers with the exact top k by cosine distance, computed in the same store with index
 * scans off. A returned id counts when it is no farther than the exact k-th neighbour, so ties at the boundary
 * (equal distances, in any order) are not held against the index. With `graphAlone`, the same queries are also
 * asked of the HNSW index over memory_vectors directly (index scans on), and scored against the same exact top k.
 * The queries are embedded by `options.embedder`, which must be the service's own.
 */
export async function compareWithExact(
  sql: SqlClient,
  namespace: string,
  answers: readonly ServiceAnswers[],
  k: number,
  options: { graphAlone?: boolean; embedder: Embedder }
): Promise<RecallAtK> {
  // The vectors the service made for these queries: the same embedder, over the same normalised text.
  const { embedder } = options
  const dims = embedder.dimension
  const vectorType = `vector(${dims})`
  const exactTops: Array<{ literal: string; boundary: number; wanted: number }> = []
  await sql.query('SET enable_indexscan = off')
  await sql.query('SET enable_bitmapscan = off')
  let exactMs = 0
  try {
    for (const answer of answers) {
      const [vector] = await embedder.embed([normalizeText(answer.query)])
      const literal = `[${(vector as number[]).join(',')}]`
      const started = performance.now()
      const exact = (await sql.query(
        `SELECT id::text AS id, (embedding::${vectorType} <=> $2::${vectorType})::float8 AS distance FROM memories
         WHERE namespace = $1 AND embedding IS NOT NULL
         ORDER BY embedding::${vectorType} <=> $2::${vectorType} LIMIT ${k}`,
        [namespace, literal]
      )).rows as Array<{ id: string; distance: number }>
      exactMs += performance.now() - started
      exactTops.push({ literal, boundary: exact.at(-1)?.distance ?? Number.POSITIVE_INFINITY, wanted: Math.max(1, exact.length) })
    }
  } finally {
    await sql.query('RESET enable_indexscan')
    await sql.query('RESET enable_bitmapscan')
  }

  /** The share of the exact top k among `ids`, by distance, for each query. */
  const score = async (idsOf: (i: number) => string[]): Promise<RecallScore> => {
    let recallSum = 0
    let perfect = 0
    for (const [i, top] of exactTops.entries()) {
      const returned = (await sql.query(
        `SELECT id::text AS id, (embedding::${vectorType} <=> $2::${vectorType})::float8 AS distance FROM memories
         WHERE id = ANY($1::uuid[]) AND namespace = $3`,
        [idsOf(i), top.literal, namespace]
      )).rows as Array<{ id: string; distance: number }>
      const found = returned.filter((row) => row.distance <= top.boundary + 1e-9).length
      const share = Math.min(1, found / top.wanted)
      recallSum += share
      if (share === 1) perfect++
    }
    return { recall: recallSum / Math.max(1, exactTops.length), perfect }
  }

  const served = await score((i) => answers[i]!.ids)
  const result: RecallAtK = { k, queries: answers.length, ...served, exactMs: exactMs / Math.max(1, answers.length) }
  if (options.graphAlone) result.graphAlone = await askGraph(sql, namespace, exactTops.map((top) => top.literal), k, dims, score)
  return result
}

interface PlanNode {
  'Node Type': string
  'Index Name'?: string
  'Relation Name'?: string
  Plans?: PlanNode[]
}

/** Whether the plan takes its order from the index: an index scan on it, and no sort anywhere to reorder what it returns. */
function graphOrdered(plan: PlanNode, index: string): boolean {
  const nodes: PlanNode[] = []
  const walk = (node: PlanNode) => {
    nodes.push(node)
    for (const child of node.Plans ?? []) walk(child)
  }
  walk(plan)
  return nodes.some((node) => node['Index Name'] === index) && !nodes.some((node) => node['Node Type'].includes('Sort'))
}

/** e.g. "Limit > Sort > Hash Join > (Seq Scan on memories, Hash > Index Scan using memory_vectors_hnsw_384)", for the log. */
function describePlan(node: PlanNode): string {
  const name = node['Node Type'] + (node['Index Name'] ? ` using ${node['Index Name']}` : node['Relation Name'] ? ` on ${node['Relation Name']}` : '')
  const children = (node.Plans ?? []).map(describePlan)
  return children.length === 0 ? name : `${name} > ${children.length === 1 ? children[0] : `(${children.join(', ')})`}`
}

/**
 * The ids the HNSW index returns by itself for each query vector, scored by `score`. The plan must take its order
 * from the index: an iterative index scan under a sort would hand the sort every row, which is one more exact search.
 */
async function askGraph(
  sql: SqlClient,
  namespace: string,
  literals: readonly string[],
  k: number,
  dims: number,
  score: (idsOf: (i: number) => string[]) => Promise<RecallScore>
): Promise<GraphAlone | { skipped: string }> {
  const vectorType = `vector(${dims})`
  const index = `memory_vectors_hnsw_${dims}`
  const query = `SELECT mv.id::text AS id FROM memory_vectors mv JOIN memories m ON m.id = mv.id
    WHERE m.namespace = $1 AND vector_dims(mv.embedding) = ${dims}
    ORDER BY (mv.embedding::${vectorType}) <=> $2::${vectorType} LIMIT ${k}`
  for (const setting of GRAPH_SETTINGS) await sql.query(setting)
  try {
    if (literals.length === 0) return { skipped: 'no queries' }
    const plan = async (): Promise<PlanNode> => {
      const row = (await sql.query(`EXPLAIN (FORMAT JSON) ${query}`, [namespace, literals[0]])).rows[0] as Record<string, unknown>
      const value = row['QUERY PLAN']
      return ((typeof value === 'string' ? JSON.parse(value) : value) as Array<{ Plan: PlanNode }>)[0]!.Plan
    }
    const own = await plan()
    let forced: GraphAlone['forced']
    if (!graphOrdered(own, index)) {
      // A table the planner has no statistics for (PGlite has no autovacuum) can look small enough to read whole
      // and sort. Steer it onto the index, and say so.
      await sql.query('SET enable_seqscan = off')
      await sql.query('SET enable_sort = off')
      const steered = await plan()
      if (!graphOrdered(steered, index)) {
        return { skipped: `the plan does not take its order from ${index}, even with enable_seqscan and enable_sort off: ${describePlan(steered)}` }
      }
      forced = { settings: 'enable_seqscan and enable_sort off', plannersOwn: describePlan(own) }
    }
    const ids: string[][] = []
    let ms = 0
    for (const literal of literals) {
      const started = performance.now()
      const rows = (await sql.query(query, [namespace, literal])).rows as Array<{ id: string }>
      ms += performance.now() - started
      ids.push(rows.map((row) => row.id))
    }
    return { ...(await score((i) => ids[i] ?? [])), ms: ms / literals.length, ...(forced ? { forced } : {}) }
  } finally {
    await sql.query('RESET enable_seqscan')
    await sql.query('RESET enable_sort')
    await sql.query('RESET hnsw.ef_search')
    await sql.query('RESET hnsw.iterative_scan')
  }
}
