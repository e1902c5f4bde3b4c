import assert from 'node:assert/strict'
import { after, describe, test } from 'node:test'
import { queueKeys } from '../../src/queue/queue-keys.js'
import { createPostgresDatabase, testRedisUrl } from '../helper.js'
import { startRedisServer, testRedisClient, type RedisServer } from '../support/redis.js'
import { saveAsync, storedMemories } from '../support/queued-saves.js'
import { startSage, type SageProcess } from '../support/sage-process.js'
import { waitFor } from '../support/wait-for.js'

const postgresUrl = process.env.TEST_DATABASE_URL
// This test runs its own redis-server; it asks for TEST_REDIS_URL only so CI without Redis fails here too.
const skip = !testRedisUrl() ? 'TEST_REDIS_URL is not set' : !postgresUrl ? 'TEST_DATABASE_URL is not set' : false

interface Phase {
  name: string
  statuses: Map<number, number>
}

describe('Redis stopped during a run of asynchronous saves', { skip }, () => {
  let database: Awaited<ReturnType<typeof createPostgresDatabase>> | undefined
  let redisServer: RedisServer | undefined
  let sage: SageProcess | undefined
  after(async () => {
    await sage?.stop('SIGKILL')
    await redisServer?.stop()
    await database?.drop()
  })

  test('no 5xx while Redis is frozen or gone, and every acknowledged save is present', async () => {
    database = await createPostgresDatabase(postgresUrl!)
    redisServer = await startRedisServer()
    const port = redisServer.port
    const prefix = 'sage:'
    const keys = queueKeys(prefix)
    sage = await startSage({
      DATABASE_URL: database.url,
      REDIS_URL: redisServer.url,
      REDIS_KEY_PREFIX: prefix,
      REDIS_COMMAND_TIMEOUT_MS: '300',
      QUEUE_CLAIM_IDLE_MS: '1000',
      RATE_LIMIT_MAX: '1000000'
    })
    const url = sage.url

    // Every acknowledged id, with the phase that acknowledged it.
    const acknowledged = new Map<string, string>()
    const failures: string[] = []
    const phases: Phase[] = []
    let phase: Phase = { name: 'start', statuses: new Map() }
    let running = true
    let paused = false
    let sequence = 0
    let inFlight = 0
    // Eight clients saving without pause: single saves and batches of five, every one asking for 202.
    const load = Promise.all(
      Array.from({ length: 8 }, async (_, worker) => {
        while (running) {
          if (paused) {
            await new Promise((resolve) => setTimeout(resolve, 20))
            continue
          }
          const n = sequence++
          const current = phase
          inFlight++
          try {
            const reply = await saveAsync(url, `w${worker}-${n}`, n % 3 === 0 ? 5 : 1)
            current.statuses.set(reply.status, (current.statuses.get(reply.status) ?? 0) + 1)
            if (reply.status >= 500 || reply.ids.length === 0) failures.push(`${current.name}: ${reply.status}`)
            for (const id of reply.ids) acknowledged.set(id, `${current.name} (${reply.status})`)
          } catch (error) {
            failures.push(`${current.name}: ${(error as Error).message}`)
          } finally {
            inFlight--
          }
        }
      })
    )
    const during = async (name: string, ms: number) => {
      phase = { name, statuses: new Map() }
      phases.push(phase)
      await new Promise((resolve) => setTimeout(resolve, ms))
    }
    const count = (name: string, status: number) => phases.find((p) => p.name === name)!.statuses.get(status) ?? 0

    await during('redis up', 1000)
    redisServer.signal('SIGSTOP') // frozen: connected, answering nothing
    await during('redis frozen', 2000)
    redisServer.signal('SIGCONT')
    await during('redis thawed', 2500)

    // A Redis without persistence forgets what it holds when it stops (that is what the AOF is for, see
    // docs/redis.md), so the queue is drained before this one is stopped for real.
    paused = true
    await waitFor('the saves in flight to be answered', () => inFlight === 0)
    const probe = testRedisClient(redisServer.url)
    await waitFor('the queue to drain before the stop', async () => (await probe.xlen(keys.stream)) === 0, 30_000, 100)
    probe.disconnect()
    await redisServer.stop()
    paused = false
    await during('redis stopped', 2000)
    redisServer = await startRedisServer(port) // a new, empty Redis on the same port
    await during('redis restarted', 4000)
    running = false
    await load

    assert.deepEqual(failures, [])
    const summary = phases.map((p) => `${p.name}: ${JSON.stringify([...p.statuses])}`).join('\n')
    assert.ok(count('redis up', 202) > 0, summary)
    assert.ok(count('redis frozen', 201) > 0, `frozen Redis: saves made at once\n${summary}`)
    assert.ok(count('redis thawed', 202) > 0, summary)
    assert.ok(count('redis stopped', 201) > 0, summary)
    assert.equal(count('redis stopped', 202), 0, summary)
    assert.ok(count('redis restarted', 202) > 0, `queued again once Redis is back\n${summary}`)

    const after = testRedisClient(redisServer.url)
    try {
      await waitFor('the queue to drain', async () => (await after.xlen(keys.stream)) === 0, 30_000, 100)
    } finally {
      after.disconnect()
    }
    const stored = await storedMemories(database.url)
    const missing = [...acknowledged].filter(([id]) => !stored.ids.has(id)).map(([, when]) => when)
    assert.deepEqual(missing, [], `${missing.length} of ${acknowledged.size} acknowledged saves are missing\n${summary}`)
    assert.equal(stored.rows, stored.contents, 'a save was written twice')
    assert.equal(await sage.stop('SIGTERM'), 0, sage.output())
  })
})
