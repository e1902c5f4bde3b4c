import type { FastifyBaseLogger } from 'fastify'
import { backoffDelay, jittered } from '../backoff.js'
import { failureFields } from '../classify-failure.js'
import type { SaveSpool } from './save-spool.js'

/**
 * Saves a hook could not make (the database was down or slow) waiting in memory to be retried, oldest first,
 * with exponential backoff. Bounded by count and by characters: when full the oldest is dropped (and counted),
 * because a hook must never grow the process without limit while the database is away.
 * With a spool, what is still held at close is written to disk and `replay` puts it back at the next start;
 * without one (or if the process is killed outright) it is lost. Redis-backed queues are durable, this is the fallback.
 */
export interface SaveRetryBuffer<T> {
  /** Queues an item for retry; starts the retry timer if it is not running. */
  add(item: T): void
  size(): number
  /** Retries now, in order, until one fails for a reason worth retrying; resolves with how many were saved. */
  flush(): Promise<number>
  /** Stops the timer after one last flush bounded by `timeoutMs`; spools what could not be saved, or logs it lost. */
  close(timeoutMs: number): Promise<void>
  /** Buffers again what an earlier process spooled, then removes its files; resolves with how many came back. */
  replay(): Promise<number>
}

export type RetryOutcome = 'buffered' | 'saved' | 'dropped' | 'rejected'
/** Spooled at close, replayed at start, or dropped: the spool could not be written, or a line of it could not be read. */
export type SpoolEvent = 'spooled' | 'replayed' | 'dropped'

export interface SaveRetryBufferOptions<T> {
  save(item: T): Promise<void>
  /** False for errors a retry cannot fix (a validation error): the item is dropped as `rejected`. */
  isRetryable(error: unknown): boolean
  /** Size of an item for the character bound, e.g. its content length. */
  sizeOf(item: T): number
  log: FastifyBaseLogger
  maxItems?: number
  maxChars?: number
  initialDelayMs?: number
  maxDelayMs?: number
  /** Counts each item's fate, for metrics. */
  onOutcome?(outcome: RetryOutcome, count: number): void
  /** Where what is left at close waits for the next start; none keeps nothing (SAGE_DATA_DIR=:memory:). */
  spool?: SaveSpool<T>
  onSpool?(event: SpoolEvent, count: number): void
}

export function createSaveRetryBuffer<T>(options: SaveRetryBufferOptions<T>): SaveRetryBuffer<T> {
  const maxItems = options.maxItems ?? 1_000
  const maxChars = options.maxChars ?? 20_000_000
  const initialDelayMs = options.initialDelayMs ?? 500
  const maxDelayMs = options.maxDelayMs ?? 10_000
  const items: Array<{ item: T; size: number }> = []
  let chars = 0
  /** Retries failed in a row since the last save, for the backoff. */
  let failures = 0
  let timer: NodeJS.Timeout | undefined
  let flushing: Promise<number> | undefined
  let closed = false
  const outcome = (what: RetryOutcome, count = 1) => options.onOutcome?.(what, count)

  function schedule(): void {
    if (closed || timer !== undefined || items.length === 0) return
    // Jittered, so several processes coming back at once do not retry in step.
    const wait = Math.round(jittered(backoffDelay(failures, initialDelayMs, maxDelayMs)))
    timer = setTimeout(() => {
      timer = undefined
      void flush()
    }, wait)
    // Waiting retries never keep the process alive on their own; close() does the last attempt.
    timer.unref()
  }

  function flush(): Promise<number> {
    flushing ??= drain().finally(() => {
      flushing = undefined
      schedule()
    })
    return flushing
  }

  async function drain(): Promise<number> {
    let saved = 0
    while (items.length > 0) {
      const head = items[0]!
      try {
        await options.save(head.item)
        saved++
        outcome('saved')
        failures = 0
      } catch (error) {
        if (options.isRetryable(error)) {
          failures++
          options.log.warn({ ...failureFields(error), waiting: items.length, retry_in_ms: backoffDelay(failures, initialDelayMs, maxDelayMs) }, 'hook save retry failed; will retry')
          return saved
        }
        options.log.error({ err: error }, 'hook save rejected on retry; dropped')
        outcome('rejected')
      }
      // The head may have been dropped by an overflow while the save was in flight.
      if (items[0] === head) {
        items.shift()
        chars -= head.size
      }
    }
    return saved
  }

  /** Appends, then drops the oldest past the bounds. */
  function push(item: T): void {
    const size = options.sizeOf(item)
    items.push({ item, size })
    chars += size
    let dropped = 0
    while (items.length > maxItems || (chars > maxChars && items.length > 1)) {
      chars -= items.shift()!.size
      dropped++
    }
    if (dropped > 0) {
      outcome('dropped', dropped)
      options.log.error({ dropped, waiting: items.length }, 'hook retry buffer full; dropped the oldest saves')
    }
  }

  async function spoolLeft(): Promise<void> {
    const left = items.map(({ item }) => item)
    if (!options.spool) {
      options.log.error({ lost: left.length }, 'shutting down with hook saves not yet written; they are lost')
      return
    }
    try {
      await options.spool.write(left)
      options.onSpool?.('spooled', left.length)
      options.log.warn({ spooled: left.length }, 'shutting down with hook saves not yet written; spooled to disk for the next start')
    } catch (error) {
      options.onSpool?.('dropped', left.length)
      options.log.error({ err: error, lost: left.length }, 'shutting down with hook saves not yet written, and the spool could not be written; they are lost')
    }
  }

  return {
    add(item) {
      outcome('buffered')
      push(item)
      schedule()
    },
    size: () => items.length,
    flush,
    async close(timeoutMs) {
      closed = true
      if (timer !== undefined) clearTimeout(timer)
      timer = undefined
      if (items.length === 0) return
      let giveUp: NodeJS.Timeout | undefined
      await Promise.race([
        flush().catch(() => 0),
        new Promise((resolve) => {
          giveUp = setTimeout(resolve, timeoutMs)
        })
      ])
      clearTimeout(giveUp)
      if (items.length > 0) await spoolLeft()
    },
    async replay() {
      if (!options.spool) return 0
      let read: Awaited<ReturnType<SaveSpool<T>['read']>>
      try {
        read = await options.spool.read()
      } catch (error) {
        // The start goes on; the files stay for a later one.
        options.log.error({ err: error }, 'hook spool could not be read; left in place')
        return 0
      }
      const { items: spooled, corrupt, files } = read
      if (corrupt > 0) {
        options.onSpool?.('dropped', corrupt)
        options.log.error({ corrupt }, 'hook spool lines that could not be read; skipped')
      }
      for (const item of spooled) push(item)
      // Buffered again before the files go: a stop from here on spools them anew.
      await options.spool.remove(files).catch((error: unknown) => options.log.error({ err: error }, 'hook spool could not be removed; its saves may be replayed again, each still one memory'))
      if (spooled.length > 0) {
        options.onSpool?.('replayed', spooled.length)
        options.log.info({ replayed: spooled.length }, 'hook saves spooled at the last shutdown buffered again')
      }
      schedule()
      return spooled.length
    }
  }
}
