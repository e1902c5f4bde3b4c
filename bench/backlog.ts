import { parseExposition } from './usage.js'

/**
 * A save lists its memory's vector in a backlog, which recall searches exactly; the service's vector indexer moves
 * the backlog into the HNSW graph in the background (src/memory/vector-indexer.ts). The harness waits for it after
 * writing, so that every phase starts on a quiet service whose graph holds every vector.
 */
export interface IndexerReading {
  /** performance.now() when the reading came back. */
  at: number
  /** `sage_vector_backlog`: the backlog as of the indexer's last count, which may be up to a second old. */
  backlog: number
  /** `sage_vectors_indexed_total`. */
  indexed: number
}

export interface Drain {
  /** When the backlog was found empty: the first of the confirming readings (performance.now()). */
  emptiedAt: number
  /** Vectors the indexer moved since the reading the wait was measured from. */
  indexed: number
  /** Seconds from that reading until the backlog was empty. */
  seconds: number
  /** The backlog as that reading saw it (possibly a second stale). */
  backlogAtStart: number
}

const POLL_MS = 250
/** The gauge can be stale: empty twice, this far apart, with nothing indexed in between. */
const CONFIRM_MS = 1_500
const PROGRESS_MS = 10_000
export const DRAIN_DEADLINE_MS = 30 * 60_000

export async function readIndexer(url: string): Promise<IndexerReading> {
  const response = await fetch(`${url}/metrics`)
  const text = await response.text()
  if (response.status !== 200) throw new Error(`GET /metrics answered ${response.status} ${text.slice(0, 200)}`)
  const series = parseExposition(text)
  const value = (name: string) => {
    const sample = series.find((s) => s.name === name)
    if (!sample) throw new Error(`the service's /metrics has no ${name}: is it a version without the background vector indexer?`)
    return sample.value
  }
  return { at: performance.now(), backlog: value('sage_vector_backlog'), indexed: value('sage_vectors_indexed_total') }
}

/**
 * Polls /metrics until the backlog is empty: `sage_vector_backlog` 0 in two readings at least 1.5 s apart with
 * `sage_vectors_indexed_total` unchanged between them. Measured from `since` (a reading taken when the writes that
 * filled the backlog began, or ended); logs progress every 10 s and gives up after `deadlineMs`.
 */
export async function waitForEmptyBacklog(
  url: string,
  options: { since: IndexerReading; label: string; log: (message: string) => void; deadlineMs?: number }
): Promise<Drain> {
  const { since, label, log } = options
  const deadline = performance.now() + (options.deadlineMs ?? DRAIN_DEADLINE_MS)
  let firstEmpty: IndexerReading | undefined
  let lastProgress = await readIndexer(url)
  for (let reading = lastProgress; ; reading = await readIndexer(url)) {
    if (reading.backlog === 0) {
      // A counter that moved means the indexer was still at work: the earlier empty reading was stale.
      if (!firstEmpty || firstEmpty.indexed !== reading.indexed) firstEmpty = reading
      else if (reading.at - firstEmpty.at >= CONFIRM_MS) {
        return {
          emptiedAt: firstEmpty.at,
          indexed: firstEmpty.indexed - since.indexed,
          seconds: (firstEmpty.at - since.at) / 1000,
          backlogAtStart: since.backlog
        }
      }
    } else {
      firstEmpty = undefined
    }
    if (reading.at - lastProgress.at >= PROGRESS_MS) {
      const rate = (reading.indexed - lastProgress.indexed) / ((reading.at - lastProgress.at) / 1000)
      log(`${label}: vector backlog ${reading.backlog.toLocaleString('en-US')}, indexing ${Math.round(rate)} vectors/s ` +
        `(${(reading.indexed - since.indexed).toLocaleString('en-US')} so far, ${Math.round((reading.at - since.at) / 1000)} s)`)
      lastProgress = reading
    }
    if (reading.at > deadline) {
      throw new Error(`${label}: the vector backlog was not empty ${Math.round((options.deadlineMs ?? DRAIN_DEADLINE_MS) / 60_000)} minutes later ` +
        `(${reading.backlog} left, ${reading.indexed - since.indexed} indexed)`)
    }
    await new Promise((resolve) => setTimeout(resolve, POLL_MS))
  }
}
