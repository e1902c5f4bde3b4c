import assert from 'node:assert/strict'
import { after, describe, test } from 'node:test'
import { createCachingEmbedder } from '../../src/cache/caching-embedder.js'
import type { Embedder } from '../../src/embedder/embedder.js'
import { LexicalEmbedder } from '../../src/embedder/lexical-embedder.js'
import { createSageMetrics } from '../../src/metrics/sage-metrics.js'
import { createRedisClients, type RedisClients } from '../../src/redis/redis-clients.js'
import { testRedisUrl } from '../helper.js'
import { dropKeys, testKeyPrefix } from '../support/redis.js'

const silent = { warn: () => undefined, info: () => undefined }

/** The lexical embedder, counting every text it is asked to embed. */
function countingEmbedder(delayMs = 0): Embedder & { texts: string[] } {
  const inner = new LexicalEmbedder({ dimension: 64 })
  const texts: string[] = []
  return {
    id: inner.id,
    kind: inner.kind,
    dimension: inner.dimension,
    texts,
    async embed(batch, signal) {
      texts.push(...batch)
      if (delayMs) await new Promise((resolve) => setTimeout(resolve, delayMs))
      return inner.embed(batch, signal)
    }
  }
}

const close = (a: number[], b: number[]) => a.length === b.length && a.every((x, i) => Math.abs(x - b[i]!) < 1e-6)

describe('caching embedder in process', () => {
  test('a text is embedded once; vectors match the embedder\'s own', async () => {
    const inner = countingEmbedder()
    const metrics = createSageMetrics()
    const cached = createCachingEmbedder(inner, { ttlSeconds: 60, metrics })
    const direct = await new LexicalEmbedder({ dimension: 64 }).embed(['rotate the api keys', 'deploy on friday'])
    const first = await cached.embed(['rotate the api keys', 'deploy on friday'])
    const second = await cached.embed(['deploy on friday', 'rotate the api keys', 'rotate the api keys'])
    assert.deepEqual(inner.texts, ['rotate the api keys', 'deploy on friday'])
    assert.ok(close(first[0]!, direct[0]!) && close(first[1]!, direct[1]!))
    assert.ok(close(second[0]!, direct[1]!) && close(second[1]!, direct[0]!) && close(second[2]!, direct[0]!))
    assert.equal(cached.id, inner.id)
    assert.equal(cached.dimension, inner.dimension)
    const text = await metrics.registry.metrics()
    assert.match(text, /sage_cache_hits_total\{cache="embedding"\} 3/)
    assert.match(text, /sage_cache_misses_total\{cache="embedding"\} 2/)
  })

  test('a text repeated within one call, or asked for by concurrent calls, is embedded once', async () => {
    const inner = countingEmbedder(20)
    const cached = createCachingEmbedder(inner, { ttlSeconds: 60, metrics: createSageMetrics() })
    const results = await Promise.all([cached.embed(['same', 'same', 'other']), cached.embed(['same']), cached.embed(['other', 'same'])])
    assert.deepEqual(inner.texts.sort(), ['other', 'same'])
    assert.ok(close(results[0]![0]!, results[1]![0]!))
    assert.ok(close(results[0]![2]!, results[2]![0]!))
  })

  test('after the TTL the text is embedded again', async () => {
    const inner = countingEmbedder()
    const cached = createCachingEmbedder(inner, { ttlSeconds: 1, metrics: createSageMetrics() })
    await cached.embed(['short lived'])
    await new Promise((resolve) => setTimeout(resolve, 1100))
    await cached.embed(['short lived'])
    assert.deepEqual(inner.texts, ['short lived', 'short lived'])
  })

  test('a failing embedder fails the call and caches nothing', async () => {
    let fail = true
    const inner = countingEmbedder()
    const flaky: Embedder = { id: inner.id, dimension: inner.dimension, kind: inner.kind, embed: (texts, signal) => (fail ? Promise.reject(new Error('down')) : inner.embed(texts, signal)) }
    const cached = createCachingEmbedder(flaky, { ttlSeconds: 60, metrics: createSageMetrics() })
    await assert.rejects(Promise.all([cached.embed(['x']), cached.embed(['x'])]), /down/)
    fail = false
    await cached.embed(['x'])
    assert.deepEqual(inner.texts, ['x'])
  })
})

const redisUrl = testRedisUrl()

describe('caching embedder shared through Redis', { skip: redisUrl ? false : 'TEST_REDIS_URL is not set' }, () => {
  const prefix = testKeyPrefix('embedding')
  const clients: RedisClients[] = []
  const connect = async () => {
    const c = await createRedisClients({ url: redisUrl!, keyPrefix: prefix, commandTimeoutMs: 1000 }, silent)
    clients.push(c)
    return c
  }
  after(async () => {
    await Promise.all(clients.map((c) => c.close()))
    await dropKeys(redisUrl!, prefix)
  })

  test('a second replica finds the vector in Redis and never calls its embedder', async () => {
    const a = countingEmbedder()
    const b = countingEmbedder()
    const replicaA = createCachingEmbedder(a, { redis: await connect(), ttlSeconds: 60, metrics: createSageMetrics() })
    const replicaB = createCachingEmbedder(b, { redis: await connect(), ttlSeconds: 60, metrics: createSageMetrics() })
    const [fromA] = await replicaA.embed(['shared between replicas'])
    // The write to Redis is not awaited by embed; give it a moment.
    await new Promise((resolve) => setTimeout(resolve, 50))
    const [fromB] = await replicaB.embed(['shared between replicas'])
    assert.deepEqual(a.texts, ['shared between replicas'])
    assert.deepEqual(b.texts, [])
    assert.ok(close(fromA!, fromB!))
    const ttl = await clients[0]!.commands.ttl((await clients[0]!.commands.keys(`${prefix}embedding:*`))[0]!)
    assert.ok(ttl > 0 && ttl <= 60, `ttl ${ttl}`)
  })

  test('vectors of another embedder are never served', async () => {
    const small = countingEmbedder()
    const other: Embedder & { texts: string[] } = { ...countingEmbedder(), id: 'other-model/64' }
    const redis = await connect()
    await createCachingEmbedder(small, { redis, ttlSeconds: 60, metrics: createSageMetrics() }).embed(['one text, two models'])
    await new Promise((resolve) => setTimeout(resolve, 50))
    await createCachingEmbedder(other, { redis, ttlSeconds: 60, metrics: createSageMetrics() }).embed(['one text, two models'])
    assert.deepEqual(other.texts, ['one text, two models'])
  })
})
