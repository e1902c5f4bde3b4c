import { setTimeout as sleep } from 'node:timers/promises'
import type { FastifyBaseLogger } from 'fastify'
import type { TermStatistics } from './term-statistics.js'
import { createRoundFailures } from '../round-failures.js'

export interface TermStatisticsFolderOptions {
  statistics: Pick<TermStatistics, 'fold'>
  log: FastifyBaseLogger
  /** Memories folded per transaction at most. */
  batchSize: number
  /** Terms folded per transaction at most (past the first memory), which bounds its time whatever the memories' length. */
  termBudget: number
  /** How often the backlog is looked at when nothing pokes the folder (saves and deletes of other replicas). */
  intervalMs: number
}

/** A poke waits this long first, so the saves of a busy moment are counted in one transaction, not one each. */
const GATHER_MS = 200
/** After a failed round (the database is down, say), the next waits this long. */
const RETRY_MS = 2_000

/**
 * Folds the term backlog into the term counters in the background (migrations/005_term_statistics.sql). Recall
 * reads what still waits as well, so this only keeps that small; replicas take turns (an advisory lock).
 */
export function createTermStatisticsFolder(options: TermStatisticsFolderOptions) {
  const { statistics, log } = options
  const failures = createRoundFailures(log, 'folding term statistics', 'folding term statistics failed; retrying')
  let stopped = true
  let loop: Promise<void> | undefined
  /** Aborted to end the current wait early (a poke, or stop). */
  let waiting: AbortController | undefined

  /** Folds until the backlog is empty (or the folder stops); answers how many memories it folded. */
  async function drain(): Promise<number> {
    let folded = 0
    for (;;) {
      const moved = await statistics.fold(options.batchSize, options.termBudget)
      folded += moved
      // Fewer than asked may mean the term budget ended the round, not the backlog: only an empty round ends the drain.
      if (moved === 0 || stopped) return folded
    }
  }

  async function pause(ms: number): Promise<void> {
    waiting = new AbortController()
    await sleep(ms, undefined, { signal: waiting.signal, ref: false }).catch(() => undefined)
    waiting = undefined
  }

  async function run(): Promise<void> {
    while (!stopped) {
      let delay = options.intervalMs
      try {
        await drain()
        failures.succeeded()
      } catch (error) {
        if (stopped) return
        failures.failed(error)
        delay = RETRY_MS
      }
      if (!stopped) await pause(delay)
    }
  }

  return {
    start(): void {
      if (!stopped) return
      stopped = false
      loop = run()
    },
    async stop(): Promise<void> {
      stopped = true
      waiting?.abort()
      await loop
      loop = undefined
    },
    /** Memories were written or deleted here: fold soon, not at the next interval. */
    poke(): void {
      const wait = waiting
      if (stopped || !wait) return
      setTimeout(() => wait.abort(), GATHER_MS).unref()
    },
    /** One drain, for tests and tools that run without the loop. */
    drainOnce: drain
  }
}

export type TermStatisticsFolder = ReturnType<typeof createTermStatisticsFolder>
