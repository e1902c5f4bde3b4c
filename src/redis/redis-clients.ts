import { Redis, type RedisOptions } from 'ioredis'
import { backoffDelay } from '../backoff.js'

/** How long a blocking read of the save queue waits for new entries before it looks around again. */
export const QUEUE_BLOCK_MS = 1000
/**
 * After a command times out, Redis is skipped by every user (limiter, queue, caches) until a PING, sent at most this
 * often, answers again: one request waits out the timeout, the rest take their path without Redis at once.
 */
const COOL_DOWN_MS = 1000

/** The probe itself, and closing. */
const PASS_WHILE_SKIPPING = new Set(['ping', 'quit'])

/** none: a restart of Redis loses queued saves that were acknowledged (202) but not yet written. */
export type RedisPersistence = 'aof' | 'rdb' | 'aof+rdb' | 'none' | 'unknown'

export interface RedisSettings {
  url: string
  keyPrefix: string
  commandTimeoutMs: number
  /** Told when Redis stops answering in time (false) and when it answers again (true). */
  onAvailability?: (up: boolean) => void
}

export interface RedisClients {
  /** Every ordinary command: auto-pipelined, failing fast while Redis is unreachable. */
  readonly commands: Redis
  /** The save queue's blocking reads, so they never hold up the commands connection. */
  readonly blocking: Redis
  /** Prefix of every key Sage writes (REDIS_KEY_PREFIX). */
  readonly keyPrefix: string
  /** False while Redis is down or timing out: callers take their path without Redis at once. */
  available(): boolean
  /** A command failed or timed out: skip Redis until it answers a PING again. */
  markFailed(): void
  /** Round trip of a PING, in milliseconds. */
  ping(): Promise<number>
  /** How Redis keeps what it holds across its own restart; unknown when CONFIG is disabled (managed Redis). */
  persistence(): Promise<RedisPersistence>
  close(): Promise<void>
}

/** Reconnects forever, backing off from 50 ms to 2 s with some jitter, so replicas do not reconnect in step. */
export function reconnectDelay(attempt: number): number {
  return backoffDelay(attempt, 50, 2000) + Math.floor(Math.random() * 100)
}

/** Options every Sage connection shares: commands fail instead of queueing while the connection is down. */
export function redisOptions(commandTimeoutMs: number, name: string): RedisOptions {
  return {
    lazyConnect: true,
    connectionName: name,
    connectTimeout: Math.max(commandTimeoutMs, 1000),
    commandTimeout: commandTimeoutMs,
    // A save falls back to Postgres at once rather than waiting in an offline queue for a reconnect.
    enableOfflineQueue: false,
    maxRetriesPerRequest: 1,
    retryStrategy: reconnectDelay
  }
}

/**
 * One ioredis client per role. Connection failures at start are logged, not fatal: Sage serves without
 * Redis (synchronous saves, in-process caches and limits) and the clients keep reconnecting.
 */
export async function createRedisClients(
  settings: RedisSettings,
  log: { warn(obj: object, msg: string): void; info(obj: object, msg: string): void }
): Promise<RedisClients> {
  const commands = new Redis(settings.url, { ...redisOptions(settings.commandTimeoutMs, 'sage:commands'), enableAutoPipelining: true })
  const blocking = new Redis(settings.url, {
    ...redisOptions(settings.commandTimeoutMs, 'sage:queue-reader'),
    // A blocking read legitimately takes its whole BLOCK time before answering.
    commandTimeout: QUEUE_BLOCK_MS + settings.commandTimeoutMs
  })
  let skipping = false
  let probeTimer: NodeJS.Timeout | undefined
  let closed = false
  let lastError = ''

  function markFailed(): void {
    if (skipping || closed) return
    skipping = true
    settings.onAvailability?.(false)
    log.warn({ timeout_ms: settings.commandTimeoutMs }, 'redis did not answer in time; every user skips it until it answers a PING again')
    probeLater()
  }

  function probeLater(): void {
    probeTimer = setTimeout(() => {
      commands.ping().then(
        () => {
          skipping = false
          settings.onAvailability?.(true)
          log.info({}, 'redis answers again')
        },
        () => !closed && probeLater()
      )
    }, COOL_DOWN_MS)
    probeTimer.unref()
  }
  for (const [role, client] of [['commands', commands], ['blocking', blocking]] as const) {
    // Whoever sent it (the rate limiter included), a command that timed out sends every later one around Redis.
    const send = client.sendCommand.bind(client)
    client.sendCommand = ((...args: Parameters<typeof send>) => {
      const [command] = args
      // Auto-pipelined commands issued before the timeout are sent after it: they fail at once instead of waiting again.
      // Only on a ready connection: a reconnect's own handshake (HELLO, CLIENT SETNAME, INFO) must pass, or it never becomes ready.
      if (skipping && client.status === 'ready' && !PASS_WHILE_SKIPPING.has(command.name)) {
        command.reject(new Error('redis unavailable: it did not answer in time'))
        return command.promise
      }
      const answer = send(...args) as Promise<unknown>
      answer.catch((error: Error) => error?.message === 'Command timed out' && markFailed())
      return answer
    }) as typeof client.sendCommand
    // ioredis emits every failed reconnect; log a changed message once rather than every 2 s.
    client.on('error', (error: Error) => {
      if (error.message !== lastError) log.warn({ err: error, role }, 'redis connection failed; retrying in the background')
      lastError = error.message
    })
    client.on('ready', () => {
      if (lastError) log.info({ role }, 'redis connection restored')
      lastError = ''
    })
  }
  await Promise.all([commands.connect(), blocking.connect()]).catch((error: Error) =>
    log.warn({ err: error }, 'redis is unreachable at start; saving synchronously and caching in process until it answers')
  )

  return {
    commands,
    blocking,
    keyPrefix: settings.keyPrefix,
    available: () => commands.status === 'ready' && !skipping,
    markFailed,
    async ping() {
      const started = performance.now()
      await commands.ping()
      return Math.round((performance.now() - started) * 100) / 100
    },
    async persistence(): Promise<RedisPersistence> {
      try {
        const [[, appendonly], [, save]] = await Promise.all([commands.config('GET', 'appendonly'), commands.config('GET', 'save')]) as [string[], string[]]
        const aof = appendonly === 'yes'
        const rdb = typeof save === 'string' && save.trim() !== ''
        return aof && rdb ? 'aof+rdb' : aof ? 'aof' : rdb ? 'rdb' : 'none'
      } catch {
        return 'unknown'
      }
    },
    async close() {
      closed = true
      clearTimeout(probeTimer)
      await Promise.all([commands, blocking].map((client) => client.quit().catch(() => client.disconnect())))
    }
  }
}
