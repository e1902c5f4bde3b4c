import assert from 'node:assert/strict'
import { after, describe, test } from 'node:test'
import { createRecallCache, stableJson, type RecallCache } from '../../src/cache/recall-cache.js'
import { createSageMetrics } from '../../src/metrics/sage-metrics.js'
import { createRedisClients, type RedisClients } from '../../src/redis/redis-clients.js'
import { testRedisUrl } from '../helper.js'
import { dropKeys, testKeyPrefix } from '../support/redis.js'

const silent = { warn: () => undefined, info: () => undefined }

test('stableJson: key order does not matter, undefined fields are left out', () => {
  assert.equal(stableJson({ b: 1, a: { d: [1, { f: 2, e: 1 }], c: undefined } }), stableJson({ a: { d: [1, { e: 1, f: 2 }] }, b: 1 }))
  assert.notEqual(stableJson({ a: 1 }), stableJson({ a: '1' }))
})

/** get, and when it misses, fill it the way the service does. */
async function recall(cache: RecallCache, namespace: string, request: unknown, answer: string): Promise<{ hit: boolean; value: string }> {
  const slot = await cache.get<string>(namespace, request)
  if (slot.value !== undefined) return { hit: true, value: slot.value }
  cache.set(slot, answer)
  return { hit: false, value: answer }
}

function behavesAsACache(name: string, make: () => Promise<RecallCache[]>) {
  describe(name, () => {
    test('the same request is a hit once cached; another request or namespace is not', async () => {
      const [cache] = await make()
      await recall(cache!, 'p', { query: 'warm up' }, 'ignored') // the first recall of a namespace may start its generation
      assert.equal((await recall(cache!, 'p', { query: 'a', k: 8 }, 'one')).hit, false)
      assert.deepEqual(await recall(cache!, 'p', { k: 8, query: 'a' }, 'two'), { hit: true, value: 'one' })
      assert.equal((await recall(cache!, 'p', { query: 'b', k: 8 }, 'three')).hit, false)
      assert.equal((await recall(cache!, 'q', { query: 'a', k: 8 }, 'four')).hit, false)
    })

    test('invalidating a namespace misses its entries and keeps the others', async () => {
      const [cache] = await make()
      for (const ns of ['x', 'y']) {
        await recall(cache!, ns, { query: 'warm up' }, '')
        await recall(cache!, ns, { query: 'q' }, `before ${ns}`)
      }
      await cache!.invalidate(['x'])
      assert.deepEqual(await recall(cache!, 'x', { query: 'q' }, 'after x'), { hit: false, value: 'after x' })
      assert.deepEqual(await recall(cache!, 'y', { query: 'q' }, 'after y'), { hit: true, value: 'before y' })
      await cache!.invalidateAll()
      assert.equal((await recall(cache!, 'y', { query: 'q' }, 'after all')).hit, false)
    })

    test('a recall that read the namespace before an invalidation cannot fill what later recalls read', async () => {
      const [cache] = await make()
      await recall(cache!, 'race', { query: 'warm up' }, '')
      const slot = await cache!.get<string>('race', { query: 'q' }) // the recall starts and reads the store...
      await cache!.invalidate(['race']) // ...a delete commits meanwhile...
      cache!.set(slot, 'holds the deleted memory') // ...and the slow recall fills its slot afterwards
      assert.deepEqual(await recall(cache!, 'race', { query: 'q' }, 'fresh'), { hit: false, value: 'fresh' })
    })
  })
}

behavesAsACache('recall cache in process', async () => [createRecallCache({ ttlSeconds: 60, metrics: createSageMetrics() })])

const redisUrl = testRedisUrl()

describe('recall cache through Redis', { skip: redisUrl ? false : 'TEST_REDIS_URL is not set' }, () => {
  const prefix = testKeyPrefix('recall')
  const clients: RedisClients[] = []
  const replicas = async (n: number) => {
    const caches: RecallCache[] = []
    for (let i = 0; i < n; i++) {
      const redis = await createRedisClients({ url: redisUrl!, keyPrefix: prefix, commandTimeoutMs: 1000 }, silent)
      clients.push(redis)
      caches.push(createRecallCache({ redis, ttlSeconds: 60, metrics: createSageMetrics() }))
    }
    return caches
  }
  after(async () => {
    await Promise.all(clients.map((c) => c.close()))
    await dropKeys(redisUrl!, prefix)
  })

  behavesAsACache('one replica', () => replicas(1))

  test('an entry cached by one replica is a hit on another, and an invalidation by one is seen by all', async () => {
    const [a, b] = await replicas(2)
    await recall(a!, 'shared', { query: 'warm up' }, '')
    assert.equal((await recall(a!, 'shared', { query: 'q' }, 'from a')).hit, false)
    await new Promise((resolve) => setTimeout(resolve, 30)) // the fill is not awaited
    assert.deepEqual(await recall(b!, 'shared', { query: 'q' }, 'from b'), { hit: true, value: 'from a' })
    await b!.invalidate(['shared'])
    // a holds the entry in its own LRU too, yet reads the generation from Redis first.
    assert.deepEqual(await recall(a!, 'shared', { query: 'q' }, 'fresh'), { hit: false, value: 'fresh' })
  })

  test('a namespace whose generation Redis lost starts a new one and serves nothing cached before', async () => {
    const [cache] = await replicas(1)
    await recall(cache!, 'lost', { query: 'warm up' }, '')
    await recall(cache!, 'lost', { query: 'q' }, 'old')
    assert.equal((await recall(cache!, 'lost', { query: 'q' }, '')).hit, true)
    await clients.at(-1)!.commands.del(`${prefix}recall:generation:lost`)
    assert.equal((await recall(cache!, 'lost', { query: 'q' }, 'new')).hit, false)
    assert.equal((await recall(cache!, 'lost', { query: 'q' }, 'newer')).hit, false)
    assert.deepEqual(await recall(cache!, 'lost', { query: 'q' }, 'newest'), { hit: true, value: 'newer' })
  })
})
