import type { EmbedderKind } from '../embedder/embedder.js'
import type { RecallMode } from './memory-schemas.js'
import type { NamespaceTermStatistics } from './term-statistics.js'

/**
 * How recall ranks (README, "How recall works"): BM25 over the namespace's own term statistics for the text side,
 * the cosine of the embeddings for the vector side, a weighted sum of the two in hybrid mode, and two corrections
 * on top: a memory that only asks scores below one that states, and near-copies of one fact count once.
 */

/** BM25's term-frequency saturation and length normalisation. Terms count once a memory (see bm25LengthFactor). */
export const BM25_K1 = 1.2
export const BM25_B = 0.3

/** The vector side's share of a hybrid score, by embedder (BENCHMARKS.md, "Recall quality", says how each was chosen). */
export const VECTOR_WEIGHT: Record<EmbedderKind, number> = { lexical: 0.03, semantic: 0.3 }

/** A memory that is a question states no fact: its score is multiplied by this, so the answer ranks above it. */
export const QUESTION_FACTOR = 0.7

/**
 * What was said right after a good hit in its session shares its context: it gains this share of the hit's score.
 * The answer to a question that matches gains more: at least the question's own score, so it ranks above it.
 */
export const SUCCESSOR_SHARE = 0.2
/** The best hits whose successors are looked at, at least k of them. */
export const SUCCESSOR_HITS = 10

/** Two memories sharing at least this share of their distinct terms (Jaccard) say the same thing: the newer stands. */
export const NEAR_DUPLICATE_SIMILARITY = 0.7
/**
 * Two memories holding the same query terms (two or more), the smaller of which shares at least this share of its
 * terms with the other (a decision and its later revision), are versions of one fact: the newest goes first.
 */
export const VERSION_OVERLAP = 0.5

/** BM25's inverse document frequency of a term held by `frequency` of `memories` memories: rarer weighs more. */
export function inverseDocumentFrequency(frequency: number, memories: number): number {
  const df = Math.min(frequency, memories)
  return Math.log(1 + (memories - df + 0.5) / (df + 0.5))
}

/** Each query term's BM25 weight in this namespace, in the order of `terms`. */
export function termWeights(terms: readonly string[], statistics: NamespaceTermStatistics): number[] {
  return terms.map((term) => inverseDocumentFrequency(statistics.frequencies.get(term) ?? 0, statistics.memories))
}

/**
 * BM25's length factor for a memory of `length` distinct terms, relative to the shortest memory possible: 1 for an
 * empty one, 0.84 at the namespace's average length, less for longer ones. With each term counted once, BM25's
 * score of a memory is the sum of the weights of the query terms it holds times this factor (and a constant).
 */
export function bm25LengthFactor(length: number, averageLength: number): number {
  const best = 1 + BM25_K1 * (1 - BM25_B)
  return best / (1 + BM25_K1 * (1 - BM25_B + (BM25_B * length) / Math.max(averageLength, 1)))
}

/**
 * The text score: BM25 over the best BM25 a memory of the namespace could get for the query, in [0, 1]. Terms no
 * memory holds are left out of that best: a prompt's word the project never used does not make every memory less
 * relevant. `held` says, per term, whether any memory of the namespace holds it.
 */
export function textScore(matched: readonly number[], weights: readonly number[], held: readonly boolean[], length: number, averageLength: number): number {
  let total = 0
  weights.forEach((weight, i) => {
    if (held[i]) total += weight
  })
  if (total <= 0) return 0
  let sum = 0
  for (const index of matched) sum += weights[index] ?? 0
  return Math.min(1, sum / total) * bm25LengthFactor(length, averageLength)
}

/** The relevance a mode ranks by: one side's score, or their weighted sum in hybrid mode. */
export function fusedScore(mode: RecallMode, vector: number | null, text: number | null, vectorWeight: number): number {
  const v = Math.max(vector ?? 0, 0)
  const t = text ?? 0
  if (mode === 'vector') return v
  if (mode === 'text') return t
  return (1 - vectorWeight) * t + vectorWeight * v
}

/** Ends in a question mark (any script's): it asks for a fact rather than stating one. */
export function isQuestion(content: string): boolean {
  return /[?？]["'”’)\]\s]*$/u.test(content)
}

/** The share of distinct terms two memories share (Jaccard), 0 when either has none. */
export function termSimilarity(a: ReadonlySet<string>, b: ReadonlySet<string>): number {
  if (a.size === 0 || b.size === 0) return 0
  const [small, large] = a.size <= b.size ? [a, b] : [b, a]
  let shared = 0
  for (const term of small) if (large.has(term)) shared++
  return shared / (a.size + b.size - shared)
}

export interface Ranked {
  score: number
  created_at: string
  content: string
  /** The memory's distinct terms, for telling near-copies apart. */
  terms: ReadonlySet<string>
  matched_terms: readonly string[]
}

/** The share of the smaller memory's distinct terms the other holds too. */
export function termOverlap(a: ReadonlySet<string>, b: ReadonlySet<string>): number {
  if (a.size === 0 || b.size === 0) return 0
  const [small, large] = a.size <= b.size ? [a, b] : [b, a]
  let shared = 0
  for (const term of small) if (large.has(term)) shared++
  return shared / small.size
}

/** A question and a statement are never copies or versions of each other: one asks what the other says. */
const sameKind = (a: Ranked, b: Ranked) => isQuestion(a.content) === isQuestion(b.content)

function isVersionOf(a: Ranked, b: Ranked): boolean {
  if (!sameKind(a, b) || a.matched_terms.length < 2 || a.matched_terms.length !== b.matched_terms.length) return false
  const matched = new Set(a.matched_terms)
  return b.matched_terms.every((term) => matched.has(term)) && termOverlap(a.terms, b.terms) >= VERSION_OVERLAP
}

/**
 * Versions of one fact keep the places (and scores) they ranked at, newest in the best of them: the latest decision
 * answers, the earlier ones follow it (they are still facts, and `until` reaches them as the newest).
 */
export function newestVersionsFirst<T extends Ranked>(hits: readonly T[]): T[] {
  const group = hits.map((_, i) => i)
  const root = (i: number): number => (group[i] === i ? i : (group[i] = root(group[i]!)))
  for (let i = 0; i < hits.length; i++) {
    for (let j = i + 1; j < hits.length; j++) if (isVersionOf(hits[i]!, hits[j]!)) group[root(j)] = root(i)
  }
  const out = [...hits]
  const members = new Map<number, number[]>()
  hits.forEach((_, i) => members.set(root(i), [...(members.get(root(i)) ?? []), i]))
  for (const places of members.values()) {
    if (places.length < 2) continue
    const newestFirst = places.map((i) => hits[i]!).sort((a, b) => (a.created_at < b.created_at ? 1 : a.created_at > b.created_at ? -1 : 0))
    // The places keep their scores, so results stay best first: the current version takes the best.
    places.forEach((place, n) => (out[place] = { ...newestFirst[n]!, score: hits[place]!.score }))
  }
  return out
}

/**
 * Best first, near-copies collapsed: of memories at least NEAR_DUPLICATE_SIMILARITY alike, the newest stands for
 * all of them, at the best score among them. `ranked` must come best first; at most `k` are kept.
 */
export function collapseNearDuplicates<T extends Ranked>(ranked: readonly T[], k: number): T[] {
  const groups: Array<{ best: number; members: T[] }> = []
  for (const hit of ranked) {
    const group = groups.find((g) => g.members.some((member) => sameKind(member, hit) && termSimilarity(member.terms, hit.terms) >= NEAR_DUPLICATE_SIMILARITY))
    if (group) group.members.push(hit)
    else groups.push({ best: hit.score, members: [hit] })
  }
  return groups.slice(0, k).map(({ best, members }) => {
    const newest = members.reduce((a, b) => (b.created_at > a.created_at ? b : a))
    return newest.score === best ? newest : { ...newest, score: best }
  })
}
