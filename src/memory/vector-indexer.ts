import type { FastifyBaseLogger } from 'fastify'
import type { SageMetrics } from '../metrics/sage-metrics.js'
import type { MemoryRepository } from './memory-repository.js'

export interface VectorIndexerOptions {
  repository: Pick<MemoryRepository, 'indexBacklog' | 'countVectorBacklog' | 'analyze' | 'sweepOrphanVectors'>
  metrics: SageMetrics
  log: FastifyBaseLogger
  batchSize: number
  /** Polling for vectors that other replicas (or the save queue's consumers) listed. */
  intervalMs: number
}

/** A poke waits this long first, so the saves of a busy moment enter the graph in one transaction, not one each. */
const GATHER_MS = 20
/** After a failed round (the database is down, say), the next waits this long. */
const RETRY_MS = 2_000
/**
 * The graph's table is analyzed again once it has grown by this share (and at least ANALYZE_MIN_GROWTH vectors):
 * PGlite has no autovacuum, and a planner that thinks the table is empty sorts it all instead of using the graph.
 */
const ANALYZE_GROWTH = 0.2
const ANALYZE_MIN_GROWTH = 1_000
/** How often the vectors of deleted memories that raced an indexing round are swept (a scan of the graph's table). */
const SWEEP_EVERY_MS = 60 * 60_000
/** Counting a large backlog is a scan; the gauge is refreshed at most this often while the indexer is busy. */
const COUNT_EVERY_MS = 1_000

/**
 * Moves saved vectors into the HNSW graph in the background (see migrations/003_vector_index.sql): a save lists
 * its memory in the backlog, recall searches the backlog exactly, and this loop empties it in batches, one
 * transaction each. Every replica runs one; they share the work through SKIP LOCKED.
 */
export function createVectorIndexer(options: VectorIndexerOptions) {
  const { repository, metrics, log } = options
  let stopped = true
  let loop: Promise<void> | undefined
  let wake: (() => void) | undefined
  /** True only while waiting out the interval: a poke then ends the wait. */
  let idle = false
  let poked = false
  let countedAt = 0
  let sweptAt = 0
  let analyzedSize = 0
  let indexedSinceAnalyze = 0

  function sleep(ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, ms)
      timer.unref()
      wake = () => {
        clearTimeout(timer)
        resolve()
      }
    }).finally(() => {
      wake = undefined
    })
  }

  async function refreshGauge(force: boolean): Promise<void> {
    if (!force && Date.now() - countedAt < COUNT_EVERY_MS) return
    countedAt = Date.now()
    metrics.vectorBacklog.set(await repository.countVectorBacklog())
  }

  /** Empties the backlog as it stands, batch by batch, while `going` says so; resolves to how many vectors it indexed. */
  async function drain(going: () => boolean): Promise<number> {
    let total = 0
    while (going()) {
      const { taken, indexed } = await repository.indexBacklog(options.batchSize)
      total += indexed
      metrics.vectorsIndexed.inc(indexed)
      indexedSinceAnalyze += indexed
      if (indexedSinceAnalyze >= Math.max(ANALYZE_MIN_GROWTH, analyzedSize * ANALYZE_GROWTH)) {
        analyzedSize = await repository.analyze()
        indexedSinceAnalyze = 0
      }
      await refreshGauge(taken < options.batchSize)
      if (taken < options.batchSize) break
    }
    return total
  }

  async function sweepWhenDue(): Promise<void> {
    if (Date.now() - sweptAt < SWEEP_EVERY_MS) return
    sweptAt = Date.now()
    const swept = await repository.sweepOrphanVectors()
    if (swept > 0) log.info({ swept }, 'removed vectors of memories deleted while they were being indexed')
  }

  async function run(): Promise<void> {
    while (!stopped) {
      try {
        poked = false
        await drain(() => !stopped)
        await sweepWhenDue()
        if (stopped) break
        if (!poked) {
          idle = true
          await sleep(options.intervalMs)
          idle = false
        }
        if (poked && !stopped) await sleep(GATHER_MS)
      } catch (error) {
        idle = false
        if (stopped) break
        log.warn({ err: error }, 'vector indexing round failed; the vectors stay in the backlog, searched exactly, and the next round retries')
        await sleep(RETRY_MS)
      }
    }
  }

  return {
    start(): void {
      if (!stopped) return
      stopped = false
      loop = run()
    },
    /** Saves call this: there is something to index now, not at the next interval. */
    poke(): void {
      poked = true
      if (idle) wake?.()
    },
    /** One drain now, outside the loop (tests, and `sage-memory` commands that want the graph complete). */
    drainOnce: () => drain(() => true),
    async stop(): Promise<void> {
      stopped = true
      wake?.()
      await loop
      loop = undefined
    }
  }
}

export type VectorIndexer = ReturnType<typeof createVectorIndexer>
