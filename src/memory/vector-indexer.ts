import type { FastifyBaseLogger } from 'fastify'
import type { SageMetrics } from '../metrics/sage-metrics.js'
import type { MemoryRepository } from './memory-repository.js'

export interface VectorIndexerOptions {
  repository: Pick<MemoryRepository, 'indexBacklog' | 'countVectorBacklog' | 'analyze' | 'sweepOrphanVectors' | 'tidy'>
  metrics: SageMetrics
  log: FastifyBaseLogger
  batchSize: number
  /** Polling for vectors that other replicas (or the save queue's consumers) listed. */
  intervalMs: number
  /**
   * While saves keep arriving, indexing waits for a pause in them this long (0: it never waits): saves then have
   * the database to themselves, and a burst or an import goes at full speed, then into the graph.
   */
  yieldMs?: number
  /** ...but never while this many vectors this replica saved wait: recall searches the backlog exactly, so it must stay small. */
  maxDeferred?: number
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
/** Once this many vectors were indexed, the next emptied backlog is tidied (see MemoryRepository.tidy). */
const TIDY_AFTER_INDEXED = 1_000
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
  let indexedSinceTidy = 0
  const yieldMs = options.yieldMs ?? 0
  const maxDeferred = options.maxDeferred ?? 0
  /** When this replica last saved, and how many of its vectors are waiting (an estimate: others' are not counted). */
  let lastSaveAt = 0
  let deferred = 0
  /** True only while waiting for a pause in the saves: reaching maxDeferred ends the wait. */
  let waitingForPause = false

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

  /** Waits while saves are arriving, unless too many vectors wait already. */
  async function yieldToSaves(going: () => boolean): Promise<void> {
    for (;;) {
      const quietFor = Date.now() - lastSaveAt
      if (!going() || quietFor >= yieldMs || deferred >= maxDeferred) return
      waitingForPause = true
      await sleep(yieldMs - quietFor).finally(() => {
        waitingForPause = false
      })
    }
  }

  /** Empties the backlog as it stands, batch by batch, while `going` says so; resolves to how many vectors it indexed. */
  async function drain(going: () => boolean, yielding = false): Promise<number> {
    let total = 0
    while (going()) {
      if (yielding) await yieldToSaves(going)
      if (!going()) break
      const { taken, indexed } = await repository.indexBacklog(options.batchSize)
      deferred = taken < options.batchSize ? 0 : Math.max(0, deferred - taken)
      total += indexed
      metrics.vectorsIndexed.inc(indexed)
      indexedSinceAnalyze += indexed
      indexedSinceTidy += indexed
      if (indexedSinceAnalyze >= Math.max(ANALYZE_MIN_GROWTH, analyzedSize * ANALYZE_GROWTH)) {
        analyzedSize = await repository.analyze()
        indexedSinceAnalyze = 0
      }
      await refreshGauge(taken < options.batchSize)
      if (taken < options.batchSize) {
        if (indexedSinceTidy >= TIDY_AFTER_INDEXED) {
          indexedSinceTidy = 0
          await repository.tidy()
        }
        break
      }
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
        await drain(() => !stopped, yieldMs > 0)
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
    /** Saves call this with how many vectors they listed: there is something to index now, not at the next interval. */
    poke(count = 1): void {
      lastSaveAt = Date.now()
      deferred += count
      poked = true
      if (idle || (waitingForPause && deferred >= maxDeferred)) wake?.()
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
