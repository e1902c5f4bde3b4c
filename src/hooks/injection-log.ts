import type { FastifyBaseLogger } from 'fastify'
import { isDependencyFailure } from '../classify-failure.js'
import { createRoundFailures } from '../round-failures.js'
import { normalizeText } from '../memory/normalize.js'
import type { RecallHit } from '../memory/memory-schemas.js'
import type { Injection, InjectionStore, TracedHit } from './injection-store.js'

/**
 * The record of what the hooks injected and why, written beside the answer, never in its way: `record` returns at
 * once and the rows go to the store in rounds. While the store is down they wait in memory (at most
 * MAX_PENDING, the oldest dropped first) and are written when it is back, so a trace of "the database was
 * unavailable" survives the outage it describes. The table is kept within `maxRows` and `maxAgeMs`.
 */
export interface InjectionLog {
  /** Queues a trace; never throws, never waits. */
  record(injection: Injection): void
  /** Writes what is queued now (tests, shutdown). */
  flush(): Promise<void>
  readonly store: InjectionStore
  close(): Promise<void>
}

export interface InjectionLogOptions {
  store: InjectionStore
  log: FastifyBaseLogger
  /** INJECTIONS_MAX_ROWS; 0 records nothing. */
  maxRows: number
  /** INJECTIONS_MAX_AGE_DAYS, in milliseconds. */
  maxAgeMs: number
  retryDelayMs?: number
}

const MAX_PENDING = 1_000
/**
 * Pruning costs two indexed deletes: once per this many rows written (a tenth of the bound when that is fewer, so
 * the table never holds more than 10% over it), and hourly for an idle service.
 */
const PRUNE_EVERY_ROWS = 100
const PRUNE_INTERVAL_MS = 3_600_000

export function createInjectionLog(options: InjectionLogOptions): InjectionLog {
  const { store, log } = options
  const retryDelayMs = options.retryDelayMs ?? 5_000
  let pending: Injection[] = []
  let writing: Promise<void> | undefined
  const pruneFailures = createRoundFailures(log, 'pruning the injection log', 'injection log not pruned; next round tries again')
  const writeFailures = createRoundFailures(log, 'writing injection traces', 'injection traces not written; kept for retry')
  let retryTimer: NodeJS.Timeout | undefined
  const pruneEvery = Math.max(1, Math.min(PRUNE_EVERY_ROWS, Math.ceil(options.maxRows / 10)))
  let writtenSincePrune = 0
  let dropped = 0
  let closed = false

  async function prune(): Promise<void> {
    writtenSincePrune = 0
    try {
      await store.prune(options.maxRows, options.maxAgeMs)
      pruneFailures.succeeded()
    } catch (error) {
      pruneFailures.failed(error)
      writtenSincePrune = pruneEvery
    }
  }
  const pruneTimer = setInterval(() => void prune(), PRUNE_INTERVAL_MS).unref()

  async function write(): Promise<void> {
    while (pending.length > 0) {
      const round = pending
      pending = []
      try {
        await store.insertMany(round)
        writeFailures.succeeded()
      } catch (error) {
        // A round the store refuses for what it holds would be refused forever: it is dropped, not retried.
        if (!isDependencyFailure(error)) {
          log.warn({ err: error, dropped: round.length }, 'injection traces refused by the store; dropped')
          continue
        }
        // Back in front of what came meanwhile, within the bound.
        pending = [...round, ...pending]
        if (pending.length > MAX_PENDING) {
          dropped += pending.length - MAX_PENDING
          pending = pending.slice(-MAX_PENDING)
        }
        writeFailures.failed(error, { waiting: pending.length, dropped })
        if (!closed && retryTimer === undefined) {
          retryTimer = setTimeout(() => {
            retryTimer = undefined
            start()
          }, retryDelayMs).unref()
        }
        return
      }
      writtenSincePrune += round.length
      if (writtenSincePrune >= pruneEvery) await prune()
    }
  }

  function start(): Promise<void> {
    writing ??= write().finally(() => {
      writing = undefined
    })
    return writing
  }

  return {
    store,
    record(injection) {
      if (closed || options.maxRows === 0) return
      // As saves store text: no NUL or lone surrogate reaches the store.
      pending.push({
        ...injection,
        prompt: injection.prompt === null ? null : normalizeText(injection.prompt),
        session_id: injection.session_id === null ? null : normalizeText(injection.session_id)
      })
      if (pending.length > MAX_PENDING) {
        pending.shift()
        dropped++
      }
      if (retryTimer === undefined) void start()
    },
    async flush() {
      await writing
      await start()
    },
    async close() {
      closed = true
      clearInterval(pruneTimer)
      clearTimeout(retryTimer)
      retryTimer = undefined
      await writing
      if (pending.length > 0) await start()
      if (pending.length > 0) log.warn({ lost: pending.length }, 'injection traces not written before shutdown')
    }
  }
}

/** What a trace keeps of a recall hit: everything the recall said of it but the memory itself, plus the verdict. */
export function tracedHit(hit: RecallHit, injected: boolean, rule: string): TracedHit {
  const { id, namespace: _namespace, session_id: _session, role: _role, content: _content, metadata: _metadata, tags: _tags, source_id: _source, created_at: _created, ...said } = hit
  return { id, injected, rule, ...said }
}
