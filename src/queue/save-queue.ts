import type { FastifyBaseLogger } from 'fastify'
import { randomBytes } from 'node:crypto'
import { hostname } from 'node:os'
import { isDependencyFailure } from '../classify-failure.js'
import type { MemoryService, PreparedMemory, SaveKind, SaveOutcome } from '../memory/memory-service.js'
import type { QueueGaugeValues, SageMetrics } from '../metrics/sage-metrics.js'
import type { SaveResult } from '../memory/memory-schemas.js'
import { QUEUE_BLOCK_MS, type RedisClients } from '../redis/redis-clients.js'
import { queueStatus } from './queue-admin.js'
import { entryTime, pairsToObject, queueKeys, SAVE_FIELD } from './queue-keys.js'
import { backoffDelay } from '../backoff.js'

/** What one stream entry carries: the memories of one request (a save, a turn, a batch), prepared (validated, normalised, ids assigned). */
export interface StreamedSave {
  kind: SaveKind
  memories: PreparedMemory[]
}

export interface SaveQueueDeps {
  /** Undefined: no queue, every save is synchronous. */
  redis?: RedisClients
  memories: Pick<MemoryService, 'savePrepared' | 'idsByIdempotencyKey'>
  metrics: SageMetrics
  log: FastifyBaseLogger
  batchSize: number
  claimIdleMs: number
  maxAttempts: number
  /** Defaults to host, pid and a random suffix: a restarted process is a new consumer. */
  consumerName?: string
}

/** Longest pause between retries of a write the store refused for a passing reason (it is down, a deadlock). */
const MAX_RETRY_DELAY_MS = 5000
/** A consumer without a heartbeat (a version before heartbeats), nothing pending and silent this long is gone. */
const FORGET_SILENT_CONSUMER_AFTER_MS = 10 * 60_000

/** A stopping consumer leaves the group, unless entries are still pending in it (another consumer claims them). */
const LEAVE_GROUP = `
if #redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', 1, ARGV[2]) == 0 then
  redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2])
  redis.call('ZREM', KEYS[2], ARGV[2])
end
`

/**
 * Removes, in one step, the consumers whose heartbeat is older than the claim time (or that have none and have been
 * silent for ARGV[4]) and that hold nothing pending: done atomically, a consumer that is alive after all cannot take
 * an entry between the check and its removal (which would drop the entry from the group's pending list).
 * KEYS: stream, heartbeats; ARGV: group, this consumer, heartbeat cut-off (epoch ms), silence limit (ms).
 */
const FORGET_GONE_CONSUMERS = `
local removed = {}
for _, fields in ipairs(redis.call('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])) do
  local info = {}
  for i = 1, #fields, 2 do info[fields[i]] = fields[i + 1] end
  local seen = redis.call('ZSCORE', KEYS[2], info['name'])
  local gone = (seen and tonumber(seen) < tonumber(ARGV[3])) or (not seen and tonumber(info['idle']) > tonumber(ARGV[4]))
  if info['name'] ~= ARGV[2] and tonumber(info['pending']) == 0 and gone then
    redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], info['name'])
    redis.call('ZREM', KEYS[2], info['name'])
    table.insert(removed, info['name'])
  end
end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', '(' .. (tonumber(ARGV[3]) - tonumber(ARGV[4])))
return removed
`

/**
 * How long a queued Idempotency-Key is held in Redis. Once its save is written the store answers repeats (its key
 * is unique there for good); the claim only has to outlast the wait in the queue, even through an outage.
 */
export const IDEMPOTENCY_CLAIM_SECONDS = 24 * 60 * 60

/**
 * Claims a request's Idempotency-Keys and queues it, in one step, so a key is never held by an id that was not
 * queued. Returns nil once queued; otherwise the id holding each key ('' for none): keys held by other ids
 * (the caller retries with those), or all held by the request's own ids (a repeat: nothing is queued).
 * KEYS: stream, then one claim per keyed memory; ARGV: claim seconds, entry field, entry, then each claim's id.
 */
const CLAIM_AND_QUEUE = `
local held = {}
local missing, conflict = false, false
for i = 2, #KEYS do
  local id = redis.call('GET', KEYS[i])
  held[i - 1] = id or ''
  if not id then missing = true elseif id ~= ARGV[i + 2] then conflict = true end
end
if conflict or not missing then return held end
for i = 2, #KEYS do
  if held[i - 1] == '' then redis.call('SET', KEYS[i], ARGV[i + 2], 'EX', ARGV[1]) end
end
redis.call('XADD', KEYS[1], '*', ARGV[2], ARGV[3])
return false
`

export function encodeSave(save: StreamedSave): string {
  return JSON.stringify(save)
}

/** Parses an entry back; throws on anything that is not a save this service wrote. */
export function decodeSave(text: string | undefined): StreamedSave {
  if (text === undefined) throw new Error(`entry has no "${SAVE_FIELD}" field`)
  const value = JSON.parse(text) as StreamedSave
  if (!value || !Array.isArray(value.memories) || value.memories.length === 0) throw new Error('entry holds no memories')
  for (const memory of value.memories) {
    if (typeof memory?.id !== 'string' || typeof memory.namespace !== 'string' || typeof memory.content !== 'string') {
      throw new Error('entry holds a memory without id, namespace or content')
    }
    memory.created_at = new Date(memory.created_at)
  }
  return value
}

/**
 * Failures that say nothing about the entry: the store is down or busy. The entry waits and is written when the
 * store is back, never counted towards the dead-letter stream.
 */
export const isPassingFailure = isDependencyFailure

const fieldOf = (fields: string[], name: string): string | undefined => pairsToObject(fields)[name]

type StreamEntry = [id: string, fields: string[] | null]

/**
 * The asynchronous save path over a Redis Stream with one consumer group.
 *
 * Producer: each request is one entry (one XADD, one round trip): a single save, a turn's two memories, or a
 * whole batch, which therefore lands all or nothing as the synchronous batch does.
 * Consumer (one per replica): reads entries worth about QUEUE_BATCH_SIZE memories, embeds and writes them in
 * one transaction idempotent on the pre-assigned ids (an entry is never split), then XACKs and XDELs them. Entries pending longer than
 * QUEUE_CLAIM_IDLE_MS (their consumer died) are claimed by another. A write failure caused by the entry
 * itself is retried and, after QUEUE_MAX_ATTEMPTS, moved to the dead-letter stream; a failure of the store
 * (down, timing out) is retried for as long as it lasts, and the entries stay pending meanwhile.
 *
 * Trimming: an entry is deleted (XDEL) in the same MULTI as its XACK, so the stream holds exactly the saves
 * not yet written. MAXLEN/MINID trimming would be cheaper per entry but cannot tell a written entry from one
 * still pending in another consumer, and would lose the latter.
 */
export function createSaveQueue(deps: SaveQueueDeps) {
  const { redis, memories, metrics, log } = deps
  const keys = queueKeys(redis?.keyPrefix ?? '')
  const consumer = deps.consumerName ?? `${hostname()}:${process.pid}:${randomBytes(3).toString('hex')}`
  const claimIntervalMs = Math.max(500, Math.floor(deps.claimIdleMs / 2))
  const retryDelayCapMs = Math.min(MAX_RETRY_DELAY_MS, Math.max(100, Math.floor(deps.claimIdleMs / 3)))
  let stopped = true
  let running: Promise<void> | undefined
  let wake: (() => void) | undefined
  let lastWarning = ''

  /** Sleeps, or less when the queue stops. */
  const pause = (ms: number) =>
    new Promise<void>((resolve) => {
      const timer = setTimeout(done, ms)
      function done() {
        clearTimeout(timer)
        wake = undefined
        resolve()
      }
      wake = done
    })

  function warn(error: unknown, message: string): void {
    const text = `${message}: ${(error as Error)?.message}`
    if (text !== lastWarning) log.warn({ err: error, consumer }, message)
    lastWarning = text
  }

  async function ensureGroup(): Promise<void> {
    try {
      // From the start of the stream: entries appended before the group existed (Redis lost it) are read too.
      await redis!.commands.xgroup('CREATE', keys.stream, keys.group, '0', 'MKSTREAM')
    } catch (error) {
      if (!/BUSYGROUP/.test((error as Error).message)) throw error
    }
  }

  async function acknowledge(ids: string[]): Promise<void> {
    try {
      await redis!.commands.multi().xack(keys.stream, keys.group, ...ids).xdel(keys.stream, ...ids).hdel(keys.attempts, ...ids).exec()
    } catch (error) {
      // Written but not acknowledged: claimed again later and found already stored, so nothing is doubled.
      warn(error, 'queued saves written but not acknowledged; they will be claimed and recognised as stored')
    }
  }

  async function deadLetter(id: string, raw: string | undefined, error: unknown, attempts: number): Promise<void> {
    const message = (error as Error)?.message ?? String(error)
    await redis!.commands
      .multi()
      .xadd(keys.deadLetters, '*', 'entry', id, SAVE_FIELD, raw ?? '', 'error', message, 'attempts', String(attempts), 'failed_at', new Date().toISOString())
      .xack(keys.stream, keys.group, id)
      .xdel(keys.stream, id)
      .hdel(keys.attempts, id)
      .exec()
    metrics.queueEntries.inc({ event: 'dead_lettered' })
    log.error({ entry: id, attempts, error: message }, 'queued save moved to the dead-letter stream; list it with `sage-memory queue dead-letters`')
  }

  /** Resets the idle time of entries this consumer is still working on, so no other consumer claims them. */
  async function keepClaimed(ids: string[]): Promise<void> {
    await redis!.commands.xclaim(keys.stream, keys.group, consumer, 0, ...ids, 'JUSTID').catch(() => undefined)
  }

  interface Job {
    id: string
    raw: string
    save: StreamedSave
  }

  /** Writes the jobs in one transaction and acknowledges them; isolates and retries what fails. */
  async function write(jobs: Job[]): Promise<void> {
    // A replayed entry read in the same batch as its original is only acknowledged.
    const seen = new Set<string>()
    const fresh = jobs.filter((job) => {
      const isNew = job.save.memories.some((memory) => !seen.has(memory.id))
      for (const memory of job.save.memories) seen.add(memory.id)
      return isNew
    })
    let retries = 0
    for (;;) {
      try {
        const results = await memories.savePrepared(fresh.flatMap((job) => job.save.memories), 'queued')
        await acknowledge(jobs.map((job) => job.id))
        const now = Date.now()
        let offset = 0
        for (const job of fresh) {
          const created = results.slice(offset, offset + job.save.memories.length).some((r) => r.created)
          offset += job.save.memories.length
          metrics.queueEntries.inc({ event: created ? 'written' : 'duplicate' })
          metrics.queueLag.observe(Math.max(0, now - entryTime(job.id)) / 1000)
        }
        if (jobs.length > fresh.length) metrics.queueEntries.inc({ event: 'duplicate' }, jobs.length - fresh.length)
        return
      } catch (error) {
        if (stopped) return
        if (isPassingFailure(error)) {
          warn(error, 'the store refused queued saves; they stay queued and are retried until it answers')
          metrics.queueEntries.inc({ event: 'retried' }, jobs.length)
          await pause(backoffDelay(retries++, 100, retryDelayCapMs))
          await keepClaimed(jobs.map((job) => job.id))
          continue
        }
        if (jobs.length > 1) {
          // One bad entry must not hold up the rest: write each alone to find it.
          for (const job of jobs) await write([job])
          return
        }
        const job = jobs[0]!
        const attempts = await redis!.commands.hincrby(keys.attempts, job.id, 1)
        if (attempts >= deps.maxAttempts) {
          await deadLetter(job.id, job.raw, error, attempts)
          return
        }
        warn(error, 'a queued save failed; retrying it')
        metrics.queueEntries.inc({ event: 'retried' })
        await pause(backoffDelay(retries++, 100, retryDelayCapMs))
      }
    }
  }

  // How many entries to read at once: QUEUE_BATCH_SIZE memories' worth, judged by the entries read last.
  let memoriesPerEntry = 1
  const readCount = () => Math.max(1, Math.min(deps.batchSize, Math.floor(deps.batchSize / memoriesPerEntry)))

  async function processEntries(entries: StreamEntry[]): Promise<void> {
    const jobs: Job[] = []
    for (const [id, fields] of entries) {
      if (!fields) continue
      const raw = fieldOf(fields, SAVE_FIELD)
      try {
        jobs.push({ id, raw: raw!, save: decodeSave(raw) })
      } catch (error) {
        // Not a save this service can read: no retry will change that.
        await deadLetter(id, raw, error, 1)
      }
    }
    if (jobs.length === 0) return
    memoriesPerEntry = Math.max(1, jobs.reduce((sum, job) => sum + job.save.memories.length, 0) / jobs.length)
    // One transaction per QUEUE_BATCH_SIZE memories or so; a batch larger than that is one transaction of its own.
    let group: Job[] = []
    let size = 0
    for (const job of jobs) {
      if (group.length > 0 && size + job.save.memories.length > deps.batchSize) {
        await write(group)
        group = []
        size = 0
      }
      group.push(job)
      size += job.save.memories.length
    }
    await write(group)
  }

  /** Takes over entries whose consumer stopped acknowledging (it died or stalled); each takeover counts as an attempt. */
  async function claimAbandoned(): Promise<void> {
    let cursor = '0-0'
    do {
      const [next, entries] = (await redis!.commands.xautoclaim(keys.stream, keys.group, consumer, deps.claimIdleMs, cursor, 'COUNT', readCount())) as [
        string,
        StreamEntry[]
      ]
      cursor = next
      const live = entries.filter(([, fields]) => fields)
      if (live.length > 0) {
        const pipeline = redis!.commands.pipeline()
        for (const [id] of live) pipeline.hincrby(keys.attempts, id, 1)
        const counts = (await pipeline.exec())!.map(([, value]) => Number(value))
        const retry: StreamEntry[] = []
        for (const [i, entry] of live.entries()) {
          if (counts[i]! >= deps.maxAttempts) {
            await deadLetter(entry[0], fieldOf(entry[1]!, SAVE_FIELD), new Error(`claimed ${counts[i]} times from consumers that stopped while writing it`), counts[i]!)
          } else retry.push(entry)
        }
        log.info({ consumer, claimed: live.length }, 'claimed queued saves left pending by another consumer')
        metrics.queueEntries.inc({ event: 'retried' }, retry.length)
        await processEntries(retry)
      }
    } while (cursor !== '0-0' && !stopped)
    await forgetGoneConsumers()
  }

  /** Consumers of processes that stopped sending heartbeats leave the group once their entries are claimed. */
  async function forgetGoneConsumers(): Promise<void> {
    const removed = (await redis!.commands.eval(
      FORGET_GONE_CONSUMERS, 2, keys.stream, keys.consumers, keys.group, consumer, Date.now() - deps.claimIdleMs, FORGET_SILENT_CONSUMER_AFTER_MS
    )) as string[]
    if (removed.length > 0) log.info({ consumer, removed }, 'removed the save-queue consumers of processes that are gone')
  }

  /** "This consumer is alive", read by forgetGoneConsumers in every replica and by `sage-memory queue status`. */
  const heartbeat = () => redis!.commands.zadd(keys.consumers, Date.now(), consumer).catch(() => undefined)
  let heartbeatTimer: NodeJS.Timeout | undefined

  async function consume(): Promise<void> {
    let failures = 0
    let nextClaimAt = 0
    let readOwnPending = true
    while (!stopped) {
      try {
        if (Date.now() >= nextClaimAt) {
          nextClaimAt = Date.now() + claimIntervalMs
          await claimAbandoned()
        }
        if (readOwnPending) {
          // A read that failed may have been delivered all the same (Redis froze before answering): those entries
          // are pending to this consumer, and are taken back now rather than after QUEUE_CLAIM_IDLE_MS.
          const own = (await redis!.commands.xreadgroup('GROUP', keys.group, consumer, 'COUNT', readCount(), 'STREAMS', keys.stream, '0')) as Array<[string, StreamEntry[]]> | null
          const entries = own?.[0]?.[1] ?? []
          // Deleted after they were read (written by another consumer meanwhile): only their acknowledgement is left.
          const gone = entries.filter(([, fields]) => !fields).map(([id]) => id)
          if (gone.length > 0) await redis!.commands.xack(keys.stream, keys.group, ...gone)
          if (entries.length > gone.length) await processEntries(entries)
          if (entries.length === 0) readOwnPending = false
          continue
        }
        const reply = (await redis!.blocking.xreadgroup(
          'GROUP', keys.group, consumer, 'COUNT', readCount(), 'BLOCK', QUEUE_BLOCK_MS, 'STREAMS', keys.stream, '>'
        )) as Array<[string, StreamEntry[]]> | null
        const entries = reply?.[0]?.[1] ?? []
        if (entries.length > 0) await processEntries(entries)
        failures = 0
      } catch (error) {
        if (stopped) break
        if (/NOGROUP/.test((error as Error).message)) {
          // Redis lost the stream (restarted without persistence, or flushed): make the group again.
          await ensureGroup().catch(() => undefined)
          continue
        }
        failures++
        readOwnPending = true
        warn(error, 'the save queue consumer cannot read from Redis; retrying')
        await pause(backoffDelay(failures, 100, 2000))
      }
    }
  }

  /**
   * A repeated Idempotency-Key answers as its first request: with the stored ids once written (as a synchronous
   * save would), else with the ids it was queued under. Returns the results when every memory is already stored.
   */
  async function takeFirstIds(prepared: PreparedMemory[]): Promise<SaveResult[] | undefined> {
    const keyed = prepared.filter((memory) => memory.idempotency_key !== null)
    if (keyed.length === 0) return undefined
    // With the store down the save is still queued; the claim below keeps repeats on one id meanwhile.
    const stored = await memories.idsByIdempotencyKey(keyed).catch(() => new Map<string, string>())
    for (const memory of keyed) memory.id = stored.get(`${memory.namespace}\u0000${memory.idempotency_key}`) ?? memory.id
    if (stored.size === prepared.length) return prepared.map((memory) => ({ id: memory.id, created: false }))
    return undefined
  }

  /** Claims the request's keys and appends its entry (see CLAIM_AND_QUEUE); a repeat of a queued request appends nothing. */
  async function claimAndQueue(prepared: PreparedMemory[], kind: SaveKind): Promise<void> {
    const keyed = prepared.filter((memory) => memory.idempotency_key !== null)
    if (keyed.length === 0) {
      await redis!.commands.xadd(keys.stream, '*', SAVE_FIELD, encodeSave({ kind, memories: prepared }))
      return
    }
    const claims = keyed.map((memory) => `${keys.idempotency}${memory.namespace}|${memory.idempotency_key}`)
    for (;;) {
      const held = (await redis!.commands.eval(
        CLAIM_AND_QUEUE, 1 + claims.length, keys.stream, ...claims, IDEMPOTENCY_CLAIM_SECONDS, SAVE_FIELD, encodeSave({ kind, memories: prepared }), ...keyed.map((m) => m.id)
      )) as string[] | null
      if (held === null) return
      for (const [i, id] of held.entries()) if (id) keyed[i]!.id = id
      if (held.every(Boolean)) return
    }
  }

  return {
    /** True when saves can be queued (REDIS_URL is set). */
    enabled: redis !== undefined,
    consumer,
    keys,

    /**
     * Queues one request's prepared memories as one entry and answers their ids; undefined without a queue, or
     * when Redis does not take it right now (the caller then writes them with the same ids: an entry that reached
     * Redis after all is found already stored and written once).
     */
    async enqueue(prepared: readonly PreparedMemory[], kind: SaveKind): Promise<SaveOutcome | undefined> {
      if (!redis) return undefined
      if (redis.available()) {
        const entry = [...prepared]
        const stored = await takeFirstIds(entry)
        if (stored) return { queued: false, results: stored }
        try {
          await claimAndQueue(entry, kind)
          metrics.queueEntries.inc({ event: 'queued' })
          return { queued: true, ids: entry.map((memory) => memory.id) }
        } catch (error) {
          redis.markFailed()
          warn(error, 'redis did not take the save; saving synchronously')
        }
      }
      metrics.queueEntries.inc({ event: 'fallback' })
      return undefined
    },

    /** Creates the group if needed and starts this replica's consumer. */
    async start(): Promise<void> {
      if (!redis || !stopped) return
      stopped = false
      await ensureGroup().catch((error: unknown) => warn(error, 'cannot create the save queue group yet; the consumer will retry'))
      // A timer of its own, so a consumer busy with one long write (or waiting for the store) still says it is alive.
      void heartbeat()
      heartbeatTimer = setInterval(heartbeat, Math.max(250, Math.floor(deps.claimIdleMs / 4)))
      heartbeatTimer.unref()
      running = consume()
    },

    /** Stops reading; the batch being written is finished and acknowledged first. */
    async stop(): Promise<void> {
      if (stopped) return
      stopped = true
      clearInterval(heartbeatTimer)
      wake?.()
      await running
      // Gone at once from `queue status`, rather than after the claim time; entries still pending keep it there.
      await redis!.commands.eval(LEAVE_GROUP, 2, keys.stream, keys.consumers, keys.group, consumer).catch(() => undefined)
    },

    /** Depth, pending, oldest entry's age and dead letters, for the gauges. */
    async gauges(): Promise<QueueGaugeValues> {
      if (!redis!.available()) throw new Error('redis unavailable')
      const status = await queueStatus(redis!.commands, keys)
      return { depth: status.depth, pending: status.pending, oldestAgeSeconds: status.oldest_age_ms / 1000, deadLetters: status.dead_letters }
    }
  }
}

export type SaveQueue = ReturnType<typeof createSaveQueue>
