import { createHash, randomBytes } from 'node:crypto'
import { LRUCache } from 'lru-cache'
import type { SageMetrics } from '../metrics/sage-metrics.js'
import type { RedisClients } from '../redis/redis-clients.js'

export interface RecallCacheOptions {
  redis?: RedisClients
  ttlSeconds: number
  metrics: SageMetrics
  /** Recalls kept in process. */
  maxEntries?: number
}

/** Where a recall is cached: found by `get`, filled by `set`. */
export interface RecallCacheSlot<T> {
  value?: T
  /** Undefined when this recall must not be cached (the namespace's generation is unknown right now). */
  key?: string
}

export interface RecallCache {
  /** The cached answer for this namespace and normalised request, if any. */
  get<T>(namespace: string, request: unknown): Promise<RecallCacheSlot<T>>
  set<T>(slot: RecallCacheSlot<T>, value: T): void
  /** Something in these namespaces was saved or deleted: no recall cached before now is answered again. */
  invalidate(namespaces: Iterable<string>): Promise<void>
  /** Every namespace at once (vectors filled in by the backfill, a re-embed). */
  invalidateAll(): Promise<void>
  close(): void
}

const GLOBAL = '*'
const DEFAULT_MAX_ENTRIES = 5000

/** JSON with object keys sorted, so two spellings of one request are one key. */
export function stableJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(stableJson).join(',')}]`
  if (value && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>).filter(([, v]) => v !== undefined)
    entries.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${stableJson(v)}`).join(',')}}`
  }
  return JSON.stringify(value) ?? 'null'
}

const newToken = () => randomBytes(8).toString('base64url')

/**
 * Recalls cached by namespace and request, invalidated by generation: every key carries the namespace's
 * current generation token (and a global one), and a save or delete replaces the token once it has committed.
 * A recall that read the old token can only fill an entry nobody will look up again, so no cached answer
 * outlives a delete. Tokens are random, never counters, so a Redis that lost its data cannot bring an old
 * generation back. With Redis the tokens and entries are shared by replicas (a small in-process LRU in front
 * of the entries, keyed by the token read from Redis); without it everything lives in process.
 */
export function createRecallCache(options: RecallCacheOptions): RecallCache {
  const { redis, metrics } = options
  const ttlMs = options.ttlSeconds * 1000
  const local = new LRUCache<string, { json: string }>({ max: options.maxEntries ?? DEFAULT_MAX_ENTRIES, ttl: ttlMs })
  // Without Redis, the generations themselves.
  const localGenerations = new Map<string, string>()
  // Invalidations Redis refused: those namespaces are not served from the cache until Redis has them.
  const unsent = new Set<string>()
  let retryTimer: NodeJS.Timeout | undefined
  // A generation outlives every entry made under it, and then expires, which only invalidates.
  const generationTtlSeconds = options.ttlSeconds * 2 + 60
  const generationKey = (namespace: string) => `${redis!.keyPrefix}recall:generation:${namespace}`
  const entryKey = (hash: string) => `${redis!.keyPrefix}recall:${hash}`

  const hashOf = (namespace: string, generations: string, request: unknown) =>
    createHash('sha256').update(namespace).update('\u0000').update(generations).update('\u0000').update(stableJson(request)).digest('base64url')

  function miss<T>(key?: string): RecallCacheSlot<T> {
    metrics.cacheMisses.inc({ cache: 'recall' })
    return { key }
  }

  function hit<T>(json: string): RecallCacheSlot<T> {
    metrics.cacheHits.inc({ cache: 'recall' })
    return { value: JSON.parse(json) as T }
  }

  async function readGenerations(namespace: string): Promise<string | undefined> {
    if (!redis) {
      return `${localGenerations.get(GLOBAL) ?? '0'}.${localGenerations.get(namespace) ?? '0'}`
    }
    if (!redis.available() || unsent.has(GLOBAL) || unsent.has(namespace)) return undefined
    try {
      const [global, own] = await redis.commands.mget(generationKey(GLOBAL), generationKey(namespace))
      if (global && own) return `${global}.${own}`
      // A generation nobody has set yet (or one that expired) starts now; this one recall goes uncached.
      const pipeline = redis.commands.pipeline()
      if (!global) pipeline.set(generationKey(GLOBAL), newToken(), 'EX', generationTtlSeconds, 'NX')
      if (!own) pipeline.set(generationKey(namespace), newToken(), 'EX', generationTtlSeconds, 'NX')
      await pipeline.exec()
      return undefined
    } catch {
      redis.markFailed()
      return undefined
    }
  }

  async function sendInvalidations(namespaces: string[]): Promise<void> {
    if (!redis) return
    try {
      if (!redis.available()) throw new Error('redis unavailable')
      const pipeline = redis.commands.pipeline()
      for (const namespace of namespaces) pipeline.set(generationKey(namespace), newToken(), 'EX', generationTtlSeconds)
      const results = await pipeline.exec()
      const failed = results?.find(([error]) => error)
      if (failed) throw failed[0]
      for (const namespace of namespaces) unsent.delete(namespace)
    } catch {
      if (redis.available()) redis.markFailed()
      for (const namespace of namespaces) unsent.add(namespace)
      scheduleRetry()
    }
  }

  function scheduleRetry(): void {
    if (retryTimer) return
    retryTimer = setTimeout(() => {
      retryTimer = undefined
      if (unsent.size > 0) void sendInvalidations([...unsent])
    }, 1000)
    retryTimer.unref()
  }

  return {
    async get<T>(namespace: string, request: unknown): Promise<RecallCacheSlot<T>> {
      const generations = await readGenerations(namespace)
      if (generations === undefined) return miss<T>()
      const hash = hashOf(namespace, generations, request)
      const cached = local.get(hash)
      if (cached) return hit<T>(cached.json)
      if (redis) {
        try {
          const json = await redis.commands.get(entryKey(hash))
          if (json) {
            local.set(hash, { json })
            return hit<T>(json)
          }
        } catch {
          redis.markFailed()
          return miss<T>()
        }
      }
      return miss<T>(hash)
    },

    set<T>(slot: RecallCacheSlot<T>, value: T): void {
      if (!slot.key) return
      const json = JSON.stringify(value)
      local.set(slot.key, { json })
      if (redis && redis.available()) {
        redis.commands.set(entryKey(slot.key), json, 'EX', options.ttlSeconds).catch(() => redis.markFailed())
      }
    },

    async invalidate(namespaces: Iterable<string>): Promise<void> {
      const distinct = [...new Set(namespaces)]
      if (distinct.length === 0) return
      if (!redis) {
        for (const namespace of distinct) localGenerations.set(namespace, newToken())
        return
      }
      await sendInvalidations(distinct)
    },

    async invalidateAll(): Promise<void> {
      if (!redis) {
        localGenerations.set(GLOBAL, newToken())
        return
      }
      await sendInvalidations([GLOBAL])
    },

    close(): void {
      if (retryTimer) clearTimeout(retryTimer)
    }
  }
}
