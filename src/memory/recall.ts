import type { Database } from '../db/database.js'
import type { EmbedderKind } from '../embedder/embedder.js'
import { tokenize } from '../text/tokenize.js'
import type { Memory, RecallFilter, RecallMode } from './memory-schemas.js'
import { createRecallQuery, isFiltered, type CandidateRow, type RecallParams } from './recall-query.js'
import { collapseNearDuplicates, newestVersionsFirst, fusedScore, isQuestion, QUESTION_FACTOR, SUCCESSOR_HITS, SUCCESSOR_SHARE, termWeights, textScore, VECTOR_WEIGHT } from './recall-ranking.js'
import { createTermStatistics, type NamespaceTermStatistics } from './term-statistics.js'

export interface RecallRequest {
  namespace: string
  sessionId?: string | null
  mode: RecallMode
  k: number
  filter?: RecallFilter
  /** Query vector; absent in text mode or when the embedder could not be reached. */
  vector?: number[]
  /** The query's distinct terms, from the shared tokenizer. */
  terms: string[]
}

export interface RecallRow extends Memory {
  score: number
  vector_score: number | null
  text_score: number | null
  /** The query terms the memory holds. */
  matched_terms: string[]
}

export interface RecallOptions {
  /**
   * When at most this many memories match (the namespace, or the namespace under the recall's filters), their
   * vectors are compared exactly instead of through the graph (0: never). The graph holds every namespace's vectors,
   * and a filtered HNSW scan walks past the others' to find a few of its own (BENCHMARKS.md, "Reading these results").
   */
  exactSearchMaxRows?: number
  /** Sets the vector side's weight in hybrid mode (recall-ranking.ts VECTOR_WEIGHT). */
  embedderKind: EmbedderKind
  /** The vector side's weight in hybrid mode, instead of the embedder kind's. */
  vectorWeight?: number
}

/**
 * The memories holding a query's rarest terms are scored one by one, up to about this many in all; terms held by
 * more only add to the candidates' scores (recall-query.ts COMMON_TERM_SCAN).
 */
export const SCORED_MEMORIES = 1_000
/** How long a filter's count (is an exact search cheaper?) is taken as it was. */
const FILTER_COUNT_TTL_MS = 60_000
/** Filters whose count is remembered at once; past this the memory starts over. */
const FILTER_COUNT_ENTRIES = 10_000
/** Near-copies are looked for among this many times k of the best candidates. */
const COLLAPSE_WINDOW = 4

/** Indexes of the rarest terms whose memories, added up, are at most SCORED_MEMORIES. */
export function selectiveTerms(terms: readonly string[], statistics: NamespaceTermStatistics): number[] {
  // No more memories than the namespace holds can be scored: a small one is scored whole.
  if (statistics.memories <= SCORED_MEMORIES) return terms.map((_, i) => i)
  const byRarity = terms.map((term, i) => ({ i, n: statistics.frequencies.get(term) ?? 0 })).sort((a, b) => a.n - b.n)
  const selective: number[] = []
  let scored = 0
  for (const { i, n } of byRarity) {
    if (scored + n > SCORED_MEMORIES) break
    scored += n
    selective.push(i)
  }
  return selective
}

/** The recall: term statistics, candidates from both indexes, one relevance per memory, near-copies collapsed. */
export function createRecall(db: Database, dimension: number, options: RecallOptions) {
  const query = createRecallQuery(db, dimension)
  const statistics = createTermStatistics(db)
  const exactSearchMaxRows = Math.max(0, Math.trunc(options.exactSearchMaxRows ?? 0))
  const vectorWeight = options.vectorWeight ?? VECTOR_WEIGHT[options.embedderKind]
  const filterCounts = new Map<string, { n: number; at: number }>()

  /** Whether few enough memories match to compare their vectors exactly: the namespace, else the filtered part of it. */
  async function searchExactly(request: RecallRequest, namespaceSize: number): Promise<boolean> {
    if (exactSearchMaxRows === 0) return false
    if (namespaceSize <= exactSearchMaxRows) return true
    if (!isFiltered(request)) return false
    const key = JSON.stringify([request.namespace, request.sessionId ?? null, request.filter ?? null])
    const known = filterCounts.get(key)
    if (known && Date.now() - known.at < FILTER_COUNT_TTL_MS) return known.n <= exactSearchMaxRows
    const n = await query.countMatching(request, exactSearchMaxRows)
    if (filterCounts.size >= FILTER_COUNT_ENTRIES) filterCounts.clear()
    filterCounts.set(key, { n, at: Date.now() })
    return n <= exactSearchMaxRows
  }

  return {
    async recall(request: RecallRequest): Promise<RecallRow[]> {
      const { mode, terms } = request
      const stats = await statistics.read(request.namespace, terms)
      const weights = termWeights(terms, stats)
      const held = terms.map((term) => (stats.frequencies.get(term) ?? 0) > 0)
      const useVector = mode !== 'text' && request.vector !== undefined
      const params: RecallParams = {
        namespace: request.namespace,
        sessionId: request.sessionId,
        filter: request.filter,
        mode,
        vector: request.vector,
        terms,
        weights,
        averageLength: stats.averageLength,
        selective: selectiveTerms(terms, stats),
        k: request.k,
        candidates: Math.min(Math.max(request.k * 4, 40), 200),
        exact: useVector && (await searchExactly(request, stats.memories))
      }
      const rows = await query.candidates(params)
      const ranked = new Map<string, Ranked>()
      for (const row of rows) {
        if (mode === 'vector' && row.vector_score === null) continue
        ranked.set(row.id, rank(row, mode, weights, held, stats.averageLength, vectorWeight, terms))
      }
      // Vector mode is the nearest neighbours by the embeddings alone: none of the corrections below.
      if (mode === 'vector') return [...ranked.values()].sort(byScore).slice(0, request.k).map(({ asked: _asked, ...hit }) => hit)
      const best = [...ranked.values()].sort(byScore).slice(0, Math.max(request.k, SUCCESSOR_HITS))
      if (best.length > 0) {
        // What came right after a good hit shares its context; the answer to a matching question ranks above it.
        const successors = await query.successors(params, best)
        for (const hit of best) {
          const next = successors.get(hit.id)
          if (!next) continue
          const known = ranked.get(next.id) ?? rank(next, mode, weights, held, stats.averageLength, vectorWeight, terms)
          const lifted = known.score + SUCCESSOR_SHARE * hit.score
          known.score = isQuestion(hit.content) ? Math.max(lifted, hit.asked) : lifted
          ranked.set(next.id, known)
        }
      }
      const ordered = [...ranked.values()].sort(byScore)
      const window = ordered.slice(0, request.k * COLLAPSE_WINDOW).map((hit) => ({ ...hit, terms: new Set(tokenize(hit.content)) }))
      return newestVersionsFirst(collapseNearDuplicates(window, request.k)).map(({ terms: _terms, asked: _asked, ...hit }) => hit)
    }
  }
}

/** A candidate with its relevance; `asked` is its score before the question factor. */
type Ranked = RecallRow & { asked: number }

const byScore = (a: Ranked, b: Ranked) => b.score - a.score || (a.created_at < b.created_at ? 1 : a.created_at > b.created_at ? -1 : 0)

function rank(row: CandidateRow, mode: RecallMode, weights: number[], held: boolean[], averageLength: number, vectorWeight: number, terms: readonly string[]): Ranked {
  const { vector_score: vectorScore, matched, length, ...memory } = row
  const text = mode === 'vector' ? null : textScore(matched, weights, held, length, averageLength)
  const fused = fusedScore(mode, vectorScore, text, vectorWeight)
  return {
    ...memory,
    asked: fused,
    score: mode !== 'vector' && isQuestion(memory.content) ? fused * QUESTION_FACTOR : fused,
    vector_score: vectorScore,
    text_score: text,
    matched_terms: matched.map((i) => terms[i]!)
  }
}

export type Recall = ReturnType<typeof createRecall>
