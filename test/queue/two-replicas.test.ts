import assert from 'node:assert/strict'
import { after, describe, test } from 'node:test'
import { queueKeys } from '../../src/queue/queue-keys.js'
import { createPostgresDatabase, testRedisUrl } from '../helper.js'
import { dropKeys, testKeyPrefix, testRedisClient } from '../support/redis.js'
import { counterValue, saveAsync, storedMemories } from '../support/queued-saves.js'
import { startSage, type SageProcess } from '../support/sage-process.js'
import { waitFor } from '../support/wait-for.js'

const redisUrl = testRedisUrl()
const postgresUrl = process.env.TEST_DATABASE_URL
const skip = !redisUrl ? 'TEST_REDIS_URL is not set' : !postgresUrl ? 'TEST_DATABASE_URL is not set' : false

describe('two replicas on one Redis and one Postgres', { skip }, () => {
  const prefix = testKeyPrefix('replicas')
  const keys = queueKeys(prefix)
  const LIMIT = 40
  let database: Awaited<ReturnType<typeof createPostgresDatabase>> | undefined
  let replicas: SageProcess[] = []
  after(async () => {
    for (const sage of replicas) await sage.stop('SIGKILL')
    await database?.drop()
    await dropKeys(redisUrl!, prefix)
  })

  test('every queued save is written once, and requests split across both meet one rate limit', async () => {
    database = await createPostgresDatabase(postgresUrl!)
    const env = {
      DATABASE_URL: database.url,
      REDIS_URL: redisUrl!,
      REDIS_KEY_PREFIX: prefix,
      QUEUE_BATCH_SIZE: '50',
      RATE_LIMIT_MAX: String(LIMIT),
      RATE_LIMIT_WINDOW_MS: '300000'
    }
    replicas = [await startSage(env), await startSage(env)]
    const [a, b] = replicas as [SageProcess, SageProcess]
    const redis = testRedisClient(redisUrl!)
    try {
      // 20 requests, alternating: ten batches of 100 and ten single saves, 1,010 memories.
      const replies = await Promise.all(
        Array.from({ length: 20 }, (_, i) => saveAsync((i % 2 === 0 ? a : b).url, `r${i}`, i < 10 ? 100 : 1))
      )
      assert.deepEqual(replies.map((r) => r.status), Array(20).fill(202))
      const acknowledged = new Set(replies.flatMap((r) => r.ids))
      assert.equal(acknowledged.size, 1010)

      await waitFor('the queue to drain', async () => (await redis.xlen(keys.stream)) === 0, 60_000, 100)
      const stored = await storedMemories(database.url)
      assert.equal(stored.rows, 1010)
      assert.deepEqual(stored.ids, acknowledged)
      const metrics = await Promise.all(replicas.map(async (sage) => (await fetch(`${sage.url}/metrics`)).text()))
      const sum = (series: string) => metrics.reduce((total, text) => total + counterValue(text, series), 0)
      assert.equal(sum('sage_queue_entries_total{event="queued"}'), 20)
      assert.equal(sum('sage_queue_entries_total{event="written"}'), 20, 'each entry written by exactly one replica')
      assert.equal(sum('sage_queue_entries_total{event="duplicate"}'), 0)

      // 20 of the 40 requests are spent (metrics and health are not counted): 20 more pass, whichever replica takes them.
      const statuses: number[] = []
      const remaining: string[] = []
      for (let i = 0; i < 24; i++) {
        const res = await fetch(`${(i % 2 === 0 ? a : b).url}/v1/memories?namespace=load&limit=1`)
        statuses.push(res.status)
        remaining.push(res.headers.get('x-ratelimit-remaining') ?? '')
        if (res.status === 429) {
          const body = (await res.json()) as { code: string }
          assert.equal(body.code, 'SAGE_RATE_LIMITED')
          assert.ok(Number(res.headers.get('retry-after')) > 0)
        } else await res.arrayBuffer()
      }
      assert.deepEqual(statuses, [...Array(20).fill(200), 429, 429, 429, 429])
      assert.deepEqual(remaining.slice(0, 20), Array.from({ length: 20 }, (_, i) => String(LIMIT - 21 - i)))
      for (const sage of replicas) assert.equal(await sage.stop('SIGTERM'), 0, sage.output())
    } finally {
      redis.disconnect()
    }
  })
})
