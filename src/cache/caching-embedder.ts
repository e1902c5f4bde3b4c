import { createHash } from 'node:crypto'
import { LRUCache } from 'lru-cache'
import type { Embedder } from '../embedder/embedder.js'
import type { SageMetrics } from '../metrics/sage-metrics.js'
import type { RedisClients } from '../redis/redis-clients.js'

export interface CachingEmbedderOptions {
  redis?: RedisClients
  ttlSeconds: number
  metrics: SageMetrics
  /** Bytes of vectors kept in process (Float32, 4 bytes a dimension). */
  memoryBytes?: number
}

const DEFAULT_MEMORY_BYTES = 16 * 1024 * 1024

const fromBuffer = (buffer: Buffer) => new Float32Array(buffer.buffer.slice(buffer.byteOffset, buffer.byteOffset + buffer.byteLength))

/**
 * An embedder that embeds a text once per TTL: vectors are cached by a hash of the embedder id and the text,
 * in a small in-process LRU in front of Redis (shared by replicas; the LRU alone without Redis). Concurrent
 * requests for one text share a single call to the embedder. Vectors are kept as float32, which is what
 * pgvector stores anyway.
 */
export function createCachingEmbedder(inner: Embedder, options: CachingEmbedderOptions): Embedder {
  const { redis, metrics } = options
  const local = new LRUCache<string, Float32Array>({
    maxSize: options.memoryBytes ?? DEFAULT_MEMORY_BYTES,
    sizeCalculation: (vector) => Math.max(vector.byteLength, 1),
    ttl: options.ttlSeconds * 1000
  })
  const inFlight = new Map<string, Promise<Float32Array>>()
  const redisKey = (hash: string) => `${redis!.keyPrefix}embedding:${hash}`
  const hashOf = (text: string) => createHash('sha256').update(inner.id).update('\u0000').update(text).digest('base64url')

  async function fromRedis(hashes: string[]): Promise<Array<Float32Array | undefined>> {
    if (!redis || hashes.length === 0 || !redis.available()) return hashes.map(() => undefined)
    try {
      const found = await redis.commands.mgetBuffer(...hashes.map(redisKey))
      return found.map((buffer) => (buffer && buffer.byteLength === inner.dimension * 4 ? fromBuffer(buffer) : undefined))
    } catch {
      redis.markFailed()
      return hashes.map(() => undefined)
    }
  }

  function toRedis(entries: Array<[string, Float32Array]>): void {
    if (!redis || entries.length === 0 || !redis.available()) return
    const pipeline = redis.commands.pipeline()
    for (const [hash, vector] of entries) pipeline.set(redisKey(hash), Buffer.from(vector.buffer, vector.byteOffset, vector.byteLength), 'EX', options.ttlSeconds)
    // Best effort: a vector that did not reach Redis is only embedded again.
    pipeline.exec().catch(() => redis.markFailed())
  }

  /** Embeds `texts` (by hash) in one call; others asking for the same texts meanwhile wait for this call. */
  function embedMissing(texts: Map<string, string>, signal: AbortSignal | undefined): Promise<Float32Array[]> {
    const hashes = [...texts.keys()]
    const call = inner.embed([...texts.values()], signal).then((vectors) => vectors.map((v) => Float32Array.from(v)))
    hashes.forEach((hash, i) => {
      const one = call.then((vectors) => vectors[i]!)
      // The caller awaits `call` itself; this copy must not count as an unhandled rejection.
      one.catch(() => undefined)
      inFlight.set(hash, one)
    })
    return call.then(
      (vectors) => {
        for (const hash of hashes) inFlight.delete(hash)
        const fresh: Array<[string, Float32Array]> = hashes.map((hash, i) => [hash, vectors[i]!])
        for (const [hash, vector] of fresh) local.set(hash, vector)
        toRedis(fresh)
        return vectors
      },
      (error: unknown) => {
        for (const hash of hashes) inFlight.delete(hash)
        throw error
      }
    )
  }

  return {
    id: inner.id,
    kind: inner.kind,
    dimension: inner.dimension,
    async embed(texts: readonly string[], signal?: AbortSignal): Promise<number[][]> {
      const hashes = texts.map(hashOf)
      const vectors: Array<Float32Array | undefined> = hashes.map((hash) => local.get(hash))
      const unresolved = [...new Set(hashes.filter((_, i) => !vectors[i]))]
      const shared = await fromRedis(unresolved)
      const found = new Map<string, Float32Array>()
      unresolved.forEach((hash, i) => {
        const vector = shared[i]
        if (vector) {
          found.set(hash, vector)
          local.set(hash, vector)
        }
      })
      let hits = 0
      hashes.forEach((hash, i) => {
        if (vectors[i]) hits++
        else if (found.has(hash)) {
          vectors[i] = found.get(hash)
          hits++
        }
      })
      if (hits > 0) metrics.cacheHits.inc({ cache: 'embedding' }, hits)
      if (hits < texts.length) metrics.cacheMisses.inc({ cache: 'embedding' }, texts.length - hits)

      // Each distinct missing text is embedded once, and not at all when another call is already embedding it.
      const missing = new Map<string, string>()
      const awaited = new Map<string, Promise<Float32Array>>()
      hashes.forEach((hash, i) => {
        if (vectors[i] || missing.has(hash) || awaited.has(hash)) return
        const pending = inFlight.get(hash)
        if (pending) awaited.set(hash, pending)
        else missing.set(hash, texts[i]!)
      })
      if (missing.size > 0) {
        const fresh = await embedMissing(missing, signal)
        ;[...missing.keys()].forEach((hash, i) => awaited.set(hash, Promise.resolve(fresh[i]!)))
      }
      const results: number[][] = []
      for (const [i, hash] of hashes.entries()) results.push(Array.from(vectors[i] ?? (await awaited.get(hash)!)))
      return results
    }
  }
}
