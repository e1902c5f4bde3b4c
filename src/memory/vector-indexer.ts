import type { FastifyBaseLogger } from 'fastify'
import type { SageMetrics } from '../metrics/sage-metrics.js'
import type { VectorBacklog } from './vector-backlog.js'
import { createRoundFailures } from '../round-failures.js'

export interface VectorIndexerOptions {
  backlog: VectorBacklog
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
  /**
   * ...but never while this many vectors this replica saved wait: recall searches the backlog exactly, so it must
   * stay small. Unless saves arrive faster than this indexer can index (see OVERLOAD_MAX_WAIT_MS).
   */
  maxDeferred?: number
  /** How long an overload may keep indexing waiting past maxDeferred; default OVERLOAD_MAX_WAIT_MS. */
  overloadMaxWaitMs?: number
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
/** Once this many vectors were indexed, the next emptied backlog is tidied (see VectorBacklog.tidy). */
const TIDY_AFTER_INDEXED = 1_000
/** How often the vectors of deleted memories that raced an indexing round are swept (a scan of the graph's table). */
const SWEEP_EVERY_MS = 60 * 60_000
/** Counting a large backlog is a scan; the gauge is refreshed at most this often while the indexer is busy. */
const COUNT_EVERY_MS = 1_000
/**
 * While saves arrive faster than the indexer moves vectors into the graph, the backlog grows whatever it does, and
 * indexing during the burst would only take the database from the saves (BENCHMARKS.md, "Reading these results").
 * So past maxDeferred it still waits for a pause then, but for at most this long: a burst is
 * absorbed at full speed and indexed after it; a load that never pauses gets indexing's share again.
 */
const OVERLOAD_MAX_WAIT_MS = 30_000
/** Saves a second are counted over windows this long. */
const ARRIVAL_WINDOW_MS = 1_000

/**
 * Moves saved vectors into the HNSW graph in the background (see migrations/003_vector_index.sql): a save lists
 * its memory in the backlog, recall searches the backlog exactly, and this loop empties it in batches, one
 * transaction each. Every replica runs one; they share the work through SKIP LOCKED.
 */
export function createVectorIndexer(options: VectorIndexerOptions) {
  const { backlog, metrics, log } = options
  const failures = createRoundFailures(log, 'vector indexing', 'vector indexing round failed; the vectors stay in the backlog, searched exactly, and the next round retries')
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
  /**
   * When this replica last saved, its saves being written now, and how many of its vectors are waiting (an estimate:
   * others' are not counted). A batch takes hundreds of milliseconds: the gap between two ending is no pause.
   */
  let lastSaveAt = 0
  let savesInFlight = 0
  let deferred = 0
  /** True only while waiting for a pause in the saves: reaching maxDeferred ends the wait. */
  let waitingForPause = false
  const overloadMaxWaitMs = options.overloadMaxWaitMs ?? OVERLOAD_MAX_WAIT_MS
  /** This replica's saves a second (over the last full window), and this indexer's vectors a second (0: not measured yet). */
  let arrivalRate = 0
  let arrivalWindowStart = Date.now()
  let arrivalsInWindow = 0
  let indexRate = 0
  /** When the current overload began to keep indexing waiting past maxDeferred (0: none). */
  let overloadSince = 0

  function countArrivals(count: number, now: number): void {
    const elapsed = now - arrivalWindowStart
    if (elapsed >= ARRIVAL_WINDOW_MS) {
      arrivalRate = (arrivalsInWindow * 1000) / elapsed
      arrivalWindowStart = now
      arrivalsInWindow = 0
    }
    arrivalsInWindow += count
  }

  /**
   * Whether to index although saves keep arriving: once maxDeferred vectors wait, unless saves outpace indexing;
   * an overload that lasts overloadMaxWaitMs gets indexing back until it ends (or the saves pause).
   */
  function mustIndex(now: number): boolean {
    const overloaded = deferred >= maxDeferred && indexRate > 0 && arrivalRate > indexRate
    if (!overloaded) {
      overloadSince = 0
      return deferred >= maxDeferred
    }
    if (overloadSince === 0) overloadSince = now
    return now - overloadSince >= overloadMaxWaitMs
  }

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
    metrics.vectorBacklog.set(await backlog.countVectorBacklog())
  }

  /** Waits while saves are arriving, unless too many vectors wait already (and indexing can keep up with them). */
  async function yieldToSaves(going: () => boolean): Promise<void> {
    for (;;) {
      const now = Date.now()
      const quietFor = savesInFlight > 0 ? 0 : now - lastSaveAt
      if (quietFor >= yieldMs) overloadSince = 0
      if (!going() || quietFor >= yieldMs || mustIndex(now)) return
      waitingForPause = true
      // An overload's wait ends in time even if the saves never pause.
      const wait = overloadSince > 0 ? Math.min(yieldMs - quietFor, overloadSince + overloadMaxWaitMs - now) : yieldMs - quietFor
      await sleep(Math.max(1, wait)).finally(() => {
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
      const started = performance.now()
      const { taken, indexed } = await backlog.indexBacklog(options.batchSize)
      // A full batch's time is the indexing rate; a short one's is mostly the transaction's fixed cost.
      if (taken === options.batchSize) {
        const rate = (taken * 1000) / Math.max(1, performance.now() - started)
        indexRate = indexRate === 0 ? rate : 0.7 * indexRate + 0.3 * rate
      }
      deferred = taken < options.batchSize ? 0 : Math.max(0, deferred - taken)
      total += indexed
      metrics.vectorsIndexed.inc(indexed)
      indexedSinceAnalyze += indexed
      indexedSinceTidy += indexed
      if (indexedSinceAnalyze >= Math.max(ANALYZE_MIN_GROWTH, analyzedSize * ANALYZE_GROWTH)) {
        analyzedSize = await backlog.analyze()
        indexedSinceAnalyze = 0
      }
      await refreshGauge(taken < options.batchSize)
      if (taken < options.batchSize) {
        if (indexedSinceTidy >= TIDY_AFTER_INDEXED) {
          indexedSinceTidy = 0
          await backlog.tidy()
        }
        break
      }
    }
    return total
  }

  async function sweepWhenDue(): Promise<void> {
    if (Date.now() - sweptAt < SWEEP_EVERY_MS) return
    sweptAt = Date.now()
    const swept = await backlog.sweepOrphanVectors()
    if (swept > 0) log.info({ swept }, 'removed vectors of memories deleted while they were being indexed')
  }

  async function run(): Promise<void> {
    while (!stopped) {
      try {
        poked = false
        await drain(() => !stopped, yieldMs > 0)
        await sweepWhenDue()
        failures.succeeded()
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
        failures.failed(error)
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
    /** Saves call this as they begin writing, and what it returns once they ended: indexing waits for a pause in them. */
    saveStarted(): () => void {
      savesInFlight++
      lastSaveAt = Date.now()
      let ended = false
      return () => {
        if (ended) return
        ended = true
        savesInFlight--
        lastSaveAt = Date.now()
      }
    },
    /** Saves call this with how many vectors they listed: there is something to index now, not at the next interval. */
    poke(count = 1): void {
      const now = Date.now()
      lastSaveAt = now
      countArrivals(count, now)
      deferred += count
      poked = true
      if (idle || (waitingForPause && mustIndex(now))) wake?.()
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
