import type { FastifyBaseLogger } from 'fastify'
import { failureFields } from '../classify-failure.js'

/**
 * Saves a hook could not make (the database was down or slow) waiting in memory to be retried, oldest first,
 * with exponential backoff. Bounded by count and by characters: when full the oldest is dropped (and counted),
 * because a hook must never grow the process without limit while the database is away.
 * What the buffer holds is lost if the process dies; Redis-backed queues are durable, this is the fallback.
 */
export interface SaveRetryBuffer<T> {
  /** Queues an item for retry; starts the retry timer if it is not running. */
  add(item: T): void
  size(): number
  /** Retries now, in order, until one fails for a reason worth retrying; resolves with how many were saved. */
  flush(): Promise<number>
  /** Stops the timer after one last flush bounded by `timeoutMs`; logs what could not be saved. */
  close(timeoutMs: number): Promise<void>
}

export type RetryOutcome = 'buffered' | 'saved' | 'dropped' | 'rejected'

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
}

export function createSaveRetryBuffer<T>(options: SaveRetryBufferOptions<T>): SaveRetryBuffer<T> {
  const maxItems = options.maxItems ?? 1_000
  const maxChars = options.maxChars ?? 20_000_000
  const initialDelayMs = options.initialDelayMs ?? 500
  const maxDelayMs = options.maxDelayMs ?? 10_000
  const items: Array<{ item: T; size: number }> = []
  let chars = 0
  let delayMs = initialDelayMs
  let timer: NodeJS.Timeout | undefined
  let flushing: Promise<number> | undefined
  let closed = false
  const outcome = (what: RetryOutcome, count = 1) => options.onOutcome?.(what, count)

  function schedule(): void {
    if (closed || timer !== undefined || items.length === 0) return
    // Full jitter, so several processes coming back at once do not retry in step.
    const wait = Math.round(delayMs / 2 + Math.random() * (delayMs / 2))
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
        delayMs = initialDelayMs
      } catch (error) {
        if (options.isRetryable(error)) {
          delayMs = Math.min(delayMs * 2, maxDelayMs)
          options.log.warn({ ...failureFields(error), waiting: items.length, retry_in_ms: delayMs }, 'hook save retry failed; will retry')
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

  return {
    add(item) {
      const size = options.sizeOf(item)
      items.push({ item, size })
      chars += size
      outcome('buffered')
      let dropped = 0
      while (items.length > maxItems || (chars > maxChars && items.length > 1)) {
        chars -= items.shift()!.size
        dropped++
      }
      if (dropped > 0) {
        outcome('dropped', dropped)
        options.log.error({ dropped, waiting: items.length }, 'hook retry buffer full; dropped the oldest saves')
      }
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
      if (items.length > 0) options.log.error({ lost: items.length }, 'shutting down with hook saves not yet written; they are lost')
    }
  }
}
