import type { Redis } from 'ioredis'
import { entryTime, pairsToObject, SAVE_FIELD, type QueueKeys } from './queue-keys.js'

export interface QueueStatus {
  stream: string
  group: string
  /** Entries queued and not yet written (written entries are deleted from the stream). */
  depth: number
  /** Of those, handed to a consumer and not yet acknowledged. */
  pending: number
  /** Age of the oldest entry not yet written; 0 when the queue is empty. */
  oldest_age_ms: number
  dead_letters: number
  /**
   * The group's consumers: one per running replica, and for a while those of stopped ones (a replica removes a
   * consumer whose heartbeat is older than QUEUE_CLAIM_IDLE_MS once nothing is pending in it). `seen_ms`: time since
   * its last heartbeat, null for a consumer that sends none.
   */
  consumers: Array<{ name: string; pending: number; idle_ms: number; seen_ms: number | null }>
}

export interface DeadLetter {
  /** Id in the dead-letter stream (what `queue replay` takes). */
  id: string
  /** Id the entry had in the save queue. */
  entry: string
  failed_at: string
  attempts: number
  error: string
  /** The queued save as it was, or the raw text when it was not valid JSON. */
  save: unknown
}

const isNoGroup = (error: unknown) => error instanceof Error && /NOGROUP/.test(error.message)

/** Depth, pending, oldest age, consumers and dead letters, read in one round trip (the consumers in a second). */
export async function queueStatus(redis: Redis, keys: QueueKeys, options: { consumers?: boolean } = {}): Promise<QueueStatus> {
  const replies = (await redis
    .pipeline()
    .xlen(keys.stream)
    .xpending(keys.stream, keys.group)
    .xrange(keys.stream, '-', '+', 'COUNT', 1)
    .xlen(keys.deadLetters)
    .exec()) as Array<[Error | null, unknown]>
  const [[, depth], [pendingError, pendingSummary], [, oldest], [, deadLetters]] = replies as [
    [Error | null, unknown], [Error | null, unknown], [Error | null, unknown], [Error | null, unknown]
  ]
  if (pendingError && !isNoGroup(pendingError)) throw pendingError
  const pending = pendingError ? 0 : Number((pendingSummary as unknown[] | null)?.[0] ?? 0)
  const first = (oldest as Array<[string, string[]]> | null)?.[0]
  const status: QueueStatus = {
    stream: keys.stream,
    group: keys.group,
    depth: Number(depth ?? 0),
    pending,
    oldest_age_ms: first ? Math.max(0, Date.now() - entryTime(first[0])) : 0,
    dead_letters: Number(deadLetters ?? 0),
    consumers: []
  }
  if (options.consumers) {
    try {
      const [consumers, heartbeats] = await Promise.all([
        redis.xinfo('CONSUMERS', keys.stream, keys.group) as Promise<Array<Array<string | number>>>,
        redis.zrange(keys.consumers, '0', '-1', 'WITHSCORES')
      ])
      const seen = new Map(Object.entries(pairsToObject(heartbeats)).map(([name, at]) => [name, Number(at)]))
      const now = Date.now()
      status.consumers = consumers.map((fields) => {
        const info = pairsToObject(fields)
        const at = seen.get(info.name ?? '')
        return { name: info.name ?? '', pending: Number(info.pending ?? 0), idle_ms: Number(info.idle ?? 0), seen_ms: at === undefined ? null : Math.max(0, now - at) }
      })
    } catch (error) {
      if (!isNoGroup(error) && !/no such key/i.test((error as Error).message)) throw error
    }
  }
  return status
}

/** The oldest dead letters first, at most `limit`. */
export async function listDeadLetters(redis: Redis, keys: QueueKeys, limit: number): Promise<DeadLetter[]> {
  const entries = await redis.xrange(keys.deadLetters, '-', '+', 'COUNT', limit)
  return entries.map(([id, fields]) => {
    const info = pairsToObject(fields)
    let save: unknown = info[SAVE_FIELD]
    try {
      save = JSON.parse(info[SAVE_FIELD] ?? 'null')
    } catch {
      // kept as the raw text it was
    }
    return {
      id,
      entry: info.entry ?? '',
      failed_at: info.failed_at ?? '',
      attempts: Number(info.attempts ?? 0),
      error: info.error ?? '',
      save
    }
  })
}

/**
 * Puts dead letters back on the save queue (all of them, or those ids), each moved in one MULTI so none is
 * lost or doubled. The memories keep their ids, so a replay never writes one twice. Answers how many moved.
 */
export async function replayDeadLetters(redis: Redis, keys: QueueKeys, ids: readonly string[] | 'all'): Promise<number> {
  let moved = 0
  const replay = async (entries: Array<[string, string[]]>) => {
    for (const [id, fields] of entries) {
      const save = pairsToObject(fields)[SAVE_FIELD]
      if (save === undefined) continue
      const results = await redis.multi().xadd(keys.stream, '*', SAVE_FIELD, save).xdel(keys.deadLetters, id).exec()
      if (results && results.every(([error]) => !error)) moved++
    }
  }
  if (ids === 'all') {
    // Entries replayed in this run land in the save queue, not here, so paging from the start always advances.
    for (;;) {
      const page = await redis.xrange(keys.deadLetters, '-', '+', 'COUNT', 100)
      if (page.length === 0) break
      const before = moved
      await replay(page)
      if (moved === before) break
    }
  } else {
    for (const id of ids) await replay(await redis.xrange(keys.deadLetters, id, id))
  }
  return moved
}
