import type { FastifyBaseLogger } from 'fastify'
import { backoffDelay, jittered } from '../backoff.js'
import { createRoundFailures } from '../round-failures.js'
import type { SaveSpool } from './save-spool.js'

/**
 * Saves a hook could not make (the database was down or slow) waiting in memory to be retried, oldest first,
 * with exponential backoff. Bounded by count and by characters: when full the oldest is dropped (and counted),
 * because a hook must never grow the process without limit while the database is away.
 * With a spool, every item is also on disk while it waits, so a stop of any kind loses none: `replay` puts them back
 * at the next start. Without one (SAGE_DATA_DIR=:memory:) a stop loses them. Redis-backed queues are durable, this is the fallback.
 */
export interface SaveRetryBuffer<T> {
  /** Queues an item for retry; starts the retry timer if it is not running. */
  add(item: T): void
  size(): number
  /** Retries now, in order, until one fails for a reason worth retrying; resolves with how many were saved. */
  flush(): Promise<number>
  /** Stops the timer after one last flush bounded by `timeoutMs`; what is left stays spooled (or is logged lost without a spool). */
  close(timeoutMs: number): Promise<void>
  /** Buffers again what an earlier process left spooled; its files go as their saves are written. Resolves with how many came back. */
  replay(): Promise<number>
}

export type RetryOutcome = 'buffered' | 'saved' | 'dropped' | 'rejected'
/** Spooled as it entered the buffer, replayed at start, or dropped: the spool could not be written at close, or a line of it could not be read. */
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
  /** Where waiting items are kept on disk until written; none keeps nothing (SAGE_DATA_DIR=:memory:). */
  spool?: SaveSpool<T>
  onSpool?(event: SpoolEvent, count: number): void
}

export function createSaveRetryBuffer<T>(options: SaveRetryBufferOptions<T>): SaveRetryBuffer<T> {
  const maxItems = options.maxItems ?? 1_000
  const maxChars = options.maxChars ?? 20_000_000
  const initialDelayMs = options.initialDelayMs ?? 500
  const maxDelayMs = options.maxDelayMs ?? 10_000
  const items: Entry[] = []
  /** How many waiting items each spool file still holds: a file goes when the last of them leaves. */
  const fileHolds = new Map<string, number>()
  /** Spool writes and removals under way, which close() waits for. */
  const diskWork = new Set<Promise<void>>()
  let chars = 0
  /** Retries failed in a row since the last save, for the backoff. */
  let failures = 0
  let timer: NodeJS.Timeout | undefined
  let flushing: Promise<number> | undefined
  let closed = false
  const outcome = (what: RetryOutcome, count = 1) => options.onOutcome?.(what, count)
  const retryFailures = createRoundFailures(options.log, 'retrying hook saves', 'hook save retry failed; will retry')
  let spoolFailureLogged = false

  interface Entry {
    item: T
    size: number
    /** The spool file holding it, once written. */
    file?: string
    /** Saved, rejected or dropped: no longer waiting. */
    gone?: boolean
  }

  function track(work: Promise<void>): void {
    diskWork.add(work)
    void work.finally(() => diskWork.delete(work))
  }

  function hold(entry: Entry, file: string): void {
    entry.file = file
    fileHolds.set(file, (fileHolds.get(file) ?? 0) + 1)
    if (entry.gone) release(entry)
  }

  /** The entry has left the buffer: its file goes once no other waiting entry is in it. */
  function release(entry: Entry): void {
    entry.gone = true
    const file = entry.file
    if (file === undefined || !options.spool) return
    entry.file = undefined
    const left = (fileHolds.get(file) ?? 1) - 1
    if (left > 0) {
      fileHolds.set(file, left)
      return
    }
    fileHolds.delete(file)
    track(options.spool.remove(file).catch((error: unknown) => {
      options.log.error({ err: error }, 'hook spool file could not be removed; its saves may be replayed again, each still one memory')
    }))
  }

  /** Writes the entry to the spool as it enters the buffer; a failure leaves it in memory, written again at close. */
  function persist(entry: Entry): void {
    const spool = options.spool
    if (!spool) return
    track(spool.write([entry.item]).then((file) => {
      options.onSpool?.('spooled', 1)
      hold(entry, file)
    }, (error: unknown) => {
      // A disk that refuses one write refuses the next: said once, each save still kept in memory.
      if (!spoolFailureLogged) options.log.error({ err: error }, 'hook spool could not be written; saves waiting in memory only until it can')
      spoolFailureLogged = true
    }))
  }

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
        retryFailures.succeeded()
        failures = 0
      } catch (error) {
        if (options.isRetryable(error)) {
          failures++
          retryFailures.failed(error, { waiting: items.length, retry_in_ms: backoffDelay(failures, initialDelayMs, maxDelayMs) })
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
      release(head)
    }
    return saved
  }

  /** Appends, then drops the oldest past the bounds. */
  function push(item: T): Entry {
    const entry: Entry = { item, size: options.sizeOf(item) }
    items.push(entry)
    chars += entry.size
    let dropped = 0
    while (items.length > maxItems || (chars > maxChars && items.length > 1)) {
      const oldest = items.shift()!
      chars -= oldest.size
      release(oldest)
      dropped++
    }
    if (dropped > 0) {
      outcome('dropped', dropped)
      options.log.error({ dropped, waiting: items.length }, 'hook retry buffer full; dropped the oldest saves')
    }
    return entry
  }

  /** At close: every waiting item is on disk already but those whose own write failed, written now in one file. */
  async function spoolLeft(): Promise<void> {
    await Promise.all([...diskWork])
    if (!options.spool) {
      options.log.error({ lost: items.length }, 'shutting down with hook saves not yet written; they are lost')
      return
    }
    const unwritten = items.filter((entry) => entry.file === undefined)
    if (unwritten.length > 0) {
      try {
        const file = await options.spool.write(unwritten.map((entry) => entry.item))
        options.onSpool?.('spooled', unwritten.length)
        for (const entry of unwritten) hold(entry, file)
      } catch (error) {
        options.onSpool?.('dropped', unwritten.length)
        options.log.error({ err: error, lost: unwritten.length }, 'shutting down with hook saves not yet written, and the spool could not be written; they are lost')
      }
    }
    const spooled = items.filter((entry) => entry.file !== undefined).length
    if (spooled > 0) options.log.warn({ spooled }, 'shutting down with hook saves not yet written; spooled to disk for the next start')
  }

  return {
    add(item) {
      outcome('buffered')
      persist(push(item))
      schedule()
    },
    size: () => items.length,
    flush,
    async close(timeoutMs) {
      closed = true
      if (timer !== undefined) clearTimeout(timer)
      timer = undefined
      if (items.length > 0) {
        let giveUp: NodeJS.Timeout | undefined
        await Promise.race([
          flush().catch(() => 0),
          new Promise((resolve) => {
            giveUp = setTimeout(resolve, timeoutMs)
          })
        ])
        clearTimeout(giveUp)
      }
      if (items.length > 0) await spoolLeft()
      await Promise.all([...diskWork])
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
      const { entries, corrupt, files } = read
      if (corrupt > 0) {
        options.onSpool?.('dropped', corrupt)
        options.log.error({ corrupt }, 'hook spool lines that could not be read; skipped')
      }
      for (const { item, file } of entries) hold(push(item), file)
      // A file none of whose lines could be read would be read again at every start.
      const held = new Set(entries.map((entry) => entry.file))
      for (const file of files) if (!held.has(file)) track(options.spool.remove(file).catch(() => undefined))
      if (entries.length > 0) {
        options.onSpool?.('replayed', entries.length)
        options.log.info({ replayed: entries.length }, 'hook saves left spooled by an earlier process buffered again')
      }
      schedule()
      return entries.length
    }
  }
}
