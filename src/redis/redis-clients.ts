import { Redis, type RedisOptions } from 'ioredis'

/** How long a blocking read of the save queue waits for new entries before it looks around again. */
export const QUEUE_BLOCK_MS = 1000
/** After a command times out, Redis is skipped for this long instead of each request waiting out its own timeout. */
const COOL_DOWN_MS = 1000

export interface RedisSettings {
  url: string
  keyPrefix: string
  commandTimeoutMs: number
}

export interface RedisClients {
  /** Every ordinary command: auto-pipelined, failing fast while Redis is unreachable. */
  readonly commands: Redis
  /** The save queue's blocking reads, so they never hold up the commands connection. */
  readonly blocking: Redis
  /** Prefix of every key Sage writes (REDIS_KEY_PREFIX). */
  readonly keyPrefix: string
  /** False while Redis is down or just timed out: callers take their path without Redis at once. */
  available(): boolean
  /** A command failed or timed out: skip Redis for a moment. */
  markFailed(): void
  /** Round trip of a PING, in milliseconds. */
  ping(): Promise<number>
  close(): Promise<void>
}

/** Reconnects forever, backing off from 50 ms to 2 s with some jitter, so replicas do not reconnect in step. */
export function reconnectDelay(attempt: number): number {
  return Math.min(50 * 2 ** Math.min(attempt, 10), 2000) + Math.floor(Math.random() * 100)
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
  let downUntil = 0
  let lastError = ''
  for (const [role, client] of [['commands', commands], ['blocking', blocking]] as const) {
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
    available: () => commands.status === 'ready' && Date.now() >= downUntil,
    markFailed: () => {
      downUntil = Date.now() + COOL_DOWN_MS
    },
    async ping() {
      const started = performance.now()
      await commands.ping()
      return Math.round((performance.now() - started) * 100) / 100
    },
    async close() {
      await Promise.all([commands, blocking].map((client) => client.quit().catch(() => client.disconnect())))
    }
  }
}
