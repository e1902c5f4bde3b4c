import { readFile } from 'node:fs/promises'

/** A memory of a labelled set, with the id its queries name (the service assigns its own). */
export interface LabelledMemory {
  id: string
  namespace: string
  session_id?: string
  role: 'user' | 'assistant' | 'system' | 'tool' | 'note'
  content: string
  created_at: string
  tags?: string[]
}

/** A query and the ids of the memories that answer it. */
export interface LabelledQuery {
  query: string
  namespace: string
  relevant: string[]
  /** The kind of question, for figures by kind (LoCoMo's category, or the fixture's own). */
  kind: string
}

export interface LabelledSet {
  name: string
  memories: LabelledMemory[]
  queries: LabelledQuery[]
  /** The kinds in the order the figures list them. */
  kinds: string[]
}

/** A system under measure: the ids it ranks first for a query, best first. */
export type Retriever = (query: LabelledQuery, k: number) => Promise<string[]>

export const CUTOFFS = [5, 10, 25] as const

/** recall@k: a query's relevant memories among the first k, as a share of them; averaged by kind and over all. */
export interface RecallFigures {
  /** k → kind (and 'all') → mean recall in [0, 1]. */
  byK: Record<number, Record<string, number>>
  /** Queries whose first answer is relevant, by kind (and 'all'). */
  firstRelevant: Record<string, number>
  queries: Record<string, number>
}

/** Asks every query at each cutoff (each a request of its own: k changes what a system does) and scores the answers. */
export async function measure(set: LabelledSet, retrieve: Retriever, cutoffs: readonly number[] = CUTOFFS): Promise<RecallFigures> {
  const kinds = ['all', ...set.kinds]
  const sums: Record<number, Record<string, number>> = {}
  const firstRelevant: Record<string, number> = Object.fromEntries(kinds.map((kind) => [kind, 0]))
  const queries: Record<string, number> = Object.fromEntries(kinds.map((kind) => [kind, 0]))
  for (const k of cutoffs) sums[k] = Object.fromEntries(kinds.map((kind) => [kind, 0]))
  for (const query of set.queries) {
    queries.all!++
    queries[query.kind] = (queries[query.kind] ?? 0) + 1
    const relevant = new Set(query.relevant)
    for (const k of cutoffs) {
      const ids = (await retrieve(query, k)).slice(0, k)
      const share = ids.filter((id) => relevant.has(id)).length / relevant.size
      sums[k]!.all! += share
      sums[k]![query.kind] = (sums[k]![query.kind] ?? 0) + share
      if (k === cutoffs[0] && ids[0] !== undefined && relevant.has(ids[0])) {
        firstRelevant.all!++
        firstRelevant[query.kind] = (firstRelevant[query.kind] ?? 0) + 1
      }
    }
  }
  const byK: RecallFigures['byK'] = {}
  for (const k of cutoffs) byK[k] = Object.fromEntries(kinds.map((kind) => [kind, (sums[k]![kind] ?? 0) / Math.max(1, queries[kind] ?? 0)]))
  return { byK, firstRelevant, queries }
}

export async function readLabelledSet(path: string): Promise<LabelledSet> {
  const set = JSON.parse(await readFile(path, 'utf8')) as LabelledSet
  const ids = new Set(set.memories.map((m) => m.id))
  for (const query of set.queries) {
    for (const id of query.relevant) if (!ids.has(id)) throw new Error(`${path}: "${query.query}" names ${id}, which no memory has`)
    if (!set.kinds.includes(query.kind)) throw new Error(`${path}: "${query.query}" is of kind ${query.kind}, not one of ${set.kinds.join(', ')}`)
  }
  return set
}
