import { LexicalEmbedder } from '../src/embedder/lexical-embedder.js'
import { normalizeText } from '../src/memory/normalize.js'

/** Just enough of pg.Client and PGlite to run the exact search in either. */
export interface SqlClient {
  query(sql: string, params?: unknown[]): Promise<{ rows: unknown[] }>
}

export interface ServiceAnswers {
  query: string
  ids: string[]
}

export interface RecallAtK {
  k: number
  queries: number
  /** Mean over queries of the share of the true top k the service returned. */
  recall: number
  /** Queries whose answer was complete. */
  perfect: number
  /** Mean time of one exact (sequential) search, for comparison with the index. */
  exactMs: number
}

/** The service's own answers to `mode: "vector"`, which go through its HNSW index. */
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

/**
 * Compares the service's answers with the exact top k by cosine distance, computed in the same store with index
 * scans off. A returned id counts when it is no farther than the exact k-th neighbour, so ties at the boundary
 * (equal distances, in any order) are not held against the index.
 */
export async function compareWithExact(sql: SqlClient, namespace: string, answers: readonly ServiceAnswers[], k: number): Promise<RecallAtK> {
  // The vectors the service made for these queries: the same embedder, over the same normalised text.
  const embedder = new LexicalEmbedder()
  const vectorType = `vector(${embedder.dimension})`
  await sql.query('SET enable_indexscan = off')
  await sql.query('SET enable_bitmapscan = off')
  let recallSum = 0
  let perfect = 0
  let exactMs = 0
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
    const returned = (await sql.query(
      `SELECT id::text AS id, (embedding::${vectorType} <=> $2::${vectorType})::float8 AS distance FROM memories
       WHERE id = ANY($1::uuid[]) AND namespace = $3`,
      [answer.ids, literal, namespace]
    )).rows as Array<{ id: string; distance: number }>
    const boundary = exact.at(-1)?.distance ?? Number.POSITIVE_INFINITY
    const found = returned.filter((row) => row.distance <= boundary + 1e-9).length
    const wanted = Math.max(1, exact.length)
    const share = Math.min(1, found / wanted)
    recallSum += share
    if (share === 1) perfect++
  }
  await sql.query('RESET enable_indexscan')
  await sql.query('RESET enable_bitmapscan')
  return { k, queries: answers.length, recall: recallSum / Math.max(1, answers.length), perfect, exactMs: exactMs / Math.max(1, answers.length) }
}
