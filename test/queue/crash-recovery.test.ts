import assert from 'node:assert/strict'
import { after, describe, test } from 'node:test'
import pg from 'pg'
import { queueKeys } from '../../src/queue/queue-keys.js'
import { createPostgresDatabase, testRedisUrl } from '../helper.js'
import { dropKeys, testKeyPrefix, testRedisClient } from '../support/redis.js'
import { counterValue, inParallel, saveAsync, storedMemories } from '../support/queued-saves.js'
import { startSage, type SageProcess } from '../support/sage-process.js'
import { waitFor } from '../support/wait-for.js'

const redisUrl = testRedisUrl()
const postgresUrl = process.env.TEST_DATABASE_URL
const skip = !redisUrl ? 'TEST_REDIS_URL is not set' : !postgresUrl ? 'TEST_DATABASE_URL is not set' : false

describe('acknowledged asynchronous saves survive kill -9 of the service', { skip }, () => {
  const prefix = testKeyPrefix('crash')
  const keys = queueKeys(prefix)
  let database: Awaited<ReturnType<typeof createPostgresDatabase>> | undefined
  const processes: SageProcess[] = []
  after(async () => {
    for (const sage of processes) await sage.stop('SIGKILL')
    await database?.drop()
    await dropKeys(redisUrl!, prefix)
  })

  test('5,000 saves acknowledged 202, the process killed before the queue drained, all 5,000 present once after a restart', async () => {
    database = await createPostgresDatabase(postgresUrl!)
    const env = {
      DATABASE_URL: database.url,
      REDIS_URL: redisUrl!,
      REDIS_KEY_PREFIX: prefix,
      QUEUE_BATCH_SIZE: '200',
      QUEUE_CLAIM_IDLE_MS: '1000',
      RATE_LIMIT_MAX: '1000000'
    }
    const first = await startSage(env)
    processes.push(first)
    const redis = testRedisClient(redisUrl!)
    // Holding this lock keeps the consumer's first transaction waiting, so the kill comes before anything lands.
    const locker = new pg.Client({ connectionString: database.url })
    await locker.connect()
    try {
      await locker.query('BEGIN')
      await locker.query('LOCK TABLE memories IN EXCLUSIVE MODE')

      const acknowledged: string[] = []
      const statuses = new Map<number, number>()
      const record = (reply: { status: number; ids: string[] }) => {
        statuses.set(reply.status, (statuses.get(reply.status) ?? 0) + 1)
        if (reply.status === 202) acknowledged.push(...reply.ids)
      }
      // 2,000 single saves at concurrency 32 and three batches of 1,000, all at once.
      await Promise.all([
        inParallel(2000, 32, async (i) => record(await saveAsync(first.url, `single-${i}`))),
        ...[0, 1, 2].map(async (b) => record(await saveAsync(first.url, `batch-${b}`, 1000)))
      ])
      assert.deepEqual([...statuses], [[202, 2003]])
      assert.equal(acknowledged.length, 5000)
      assert.equal(new Set(acknowledged).size, 5000)

      // The consumer has taken a batch (pending) and is stuck writing it: nothing has drained.
      const taken = await waitFor('the consumer to take a batch', async () => Number(((await redis.xpending(keys.stream, keys.group)) as unknown[])[0]))
      assert.equal(await redis.xlen(keys.stream), 2003, 'one entry per request')
      assert.notEqual(await first.stop('SIGKILL'), 0)

      // A statement the dead process had already sent may still commit (a lone memory is written by one
      // statement, outside a transaction); nothing else can.
      await locker.query('COMMIT')
      assert.ok((await storedMemories(database.url)).rows <= 1)

      const second = await startSage(env)
      processes.push(second)
      await waitFor('the queue to drain', async () => (await redis.xlen(keys.stream)) === 0, 60_000, 200)
      const stored = await storedMemories(database.url)
      assert.equal(stored.rows, 5000)
      assert.equal(stored.contents, 5000)
      assert.deepEqual(new Set(acknowledged), stored.ids)
      const metrics = await (await fetch(`${second.url}/metrics`)).text()
      // Every entry went through the second process once: written, or found already stored by the first.
      const written = counterValue(metrics, 'sage_queue_entries_total{event="written"}')
      assert.equal(written + counterValue(metrics, 'sage_queue_entries_total{event="duplicate"}'), 2003)
      assert.ok(written >= 2003 - taken)
      assert.ok(counterValue(metrics, 'sage_queue_entries_total{event="retried"}') > 0, 'the dead consumer\'s pending entries were claimed')
      assert.equal(await second.stop('SIGTERM'), 0, second.output())
    } finally {
      await locker.end().catch(() => undefined)
      redis.disconnect()
    }
  })
})
