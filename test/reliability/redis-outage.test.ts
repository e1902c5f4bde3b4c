import assert from 'node:assert/strict'
import { once } from 'node:events'
import { after, describe, test } from 'node:test'
import { createPostgresDatabase, testRedisUrl } from '../helper.js'
import { startRedisServer, testRedisClient, type RedisServer } from '../support/redis.js'
import { saveAsync, storedMemories } from '../support/queued-saves.js'
import { startSage, type SageProcess } from '../support/sage-process.js'
import { waitFor } from '../support/wait-for.js'

const postgresUrl = process.env.TEST_DATABASE_URL
const skip = !testRedisUrl() ? 'TEST_REDIS_URL is not set' : !postgresUrl ? 'TEST_DATABASE_URL is not set' : false
const TIMEOUT_MS = 1_000

interface Timed {
  status: number
  ids: string[]
  ms: number
}

async function timedSave(url: string, tag: string): Promise<Timed> {
  const started = performance.now()
  const reply = await saveAsync(url, tag).catch(() => ({ status: 0, ids: [] as string[] }))
  return { ...reply, ms: performance.now() - started }
}

describe('saves over a Redis that freezes or dies', { skip }, () => {
  let database: Awaited<ReturnType<typeof createPostgresDatabase>> | undefined
  let redis: RedisServer | undefined
  let sage: SageProcess | undefined
  after(async () => {
    await sage?.stop('SIGKILL')
    await redis?.stop()
    await database?.drop()
  })

  test('frozen: each save costs at most about one command timeout (limiter, queue and cache share one cool-down), and entries read before the freeze are written within seconds of the thaw', async () => {
    database = await createPostgresDatabase(postgresUrl!)
    redis = await startRedisServer()
    // The rate limiter on (a high limit), so it asks Redis on every request as in production; the default claim time.
    sage = await startSage({ DATABASE_URL: database.url, REDIS_URL: redis.url, REDIS_COMMAND_TIMEOUT_MS: String(TIMEOUT_MS), RATE_LIMIT_MAX: '1000000', LOG_LEVEL: 'info' })
    const acknowledged = new Set<string>()
    const frozen: Timed[] = []
    let phase: 'before' | 'frozen' | 'after' = 'before'
    let running = true
    const load = Promise.all(Array.from({ length: 4 }, async (_, worker) => {
      for (let n = 0; running; n++) {
        const current = phase
        const reply = await timedSave(sage!.url, `w${worker}-${n}`)
        if (current === 'frozen') frozen.push(reply)
        reply.ids.forEach((id) => acknowledged.add(id))
        await new Promise((resolve) => setTimeout(resolve, 10))
      }
    }))
    await waitFor('queued saves before the freeze', () => acknowledged.size > 40)
    redis.signal('SIGSTOP')
    phase = 'frozen'
    await new Promise((resolve) => setTimeout(resolve, 5_000))
    redis.signal('SIGCONT')
    phase = 'after'
    const thawed = Date.now()
    await new Promise((resolve) => setTimeout(resolve, 500))
    running = false
    await load

    assert.ok(frozen.length > 8, `only ${frozen.length} saves while frozen`)
    assert.deepEqual(frozen.filter((r) => r.status < 200 || r.status >= 300).map((r) => r.status), [])
    const slowest = Math.max(...frozen.map((r) => r.ms))
    assert.ok(slowest < TIMEOUT_MS * 1.6, `a save took ${Math.round(slowest)} ms while Redis was frozen (timeout ${TIMEOUT_MS} ms): ${JSON.stringify(frozen.filter((r) => r.ms > TIMEOUT_MS / 2).map((r) => Math.round(r.ms)))}`)
    // All but the few in flight when Redis froze were answered without waiting for it.
    assert.ok(frozen.filter((r) => r.ms > TIMEOUT_MS / 2).length <= 8, JSON.stringify(frozen.map((r) => Math.round(r.ms))))
    await waitFor('every acknowledged save stored', async () => {
      const { ids } = await storedMemories(database!.url)
      return [...acknowledged].every((id) => ids.has(id))
    }, 30_000)
    const written = Date.now() - thawed
    assert.ok(written < 8_000, `the last acknowledged save was stored ${written} ms after the thaw (QUEUE_CLAIM_IDLE_MS is 30 s)`)
    assert.match(sage.output(), /redis did not answer in time/)
    // Logged when the next PING answers (one a second), which the queue's own reads need not wait for.
    await waitFor('"redis answers again" in the log', () => /redis answers again/.test(sage!.output()), 10_000)
  })

  test('a Redis that would lose acknowledged saves on its restart is warned about at start and reported by /health/ready and /metrics', async () => {
    // The private server runs with --save '' --appendonly no.
    assert.match(sage!.output(), /redis keeps nothing across its own restart/)
    const ready = async () => ((await (await fetch(`${sage!.url}/health/ready`)).json()) as { checks: { redis: { persistence?: string } } }).checks.redis.persistence
    assert.equal(await ready(), 'none')
    assert.match(await (await fetch(`${sage!.url}/metrics`)).text(), /^sage_redis_durable 0$/m)
    const admin = testRedisClient(redis!.url)
    try {
      await admin.config('SET', 'appendonly', 'yes')
      assert.equal(await ready(), 'aof')
      await admin.config('SET', 'appendonly', 'no')
    } finally {
      admin.disconnect()
    }
  })

  test('killed: saves go on synchronously at once, and queue again once Redis is back', async () => {
    const port = redis!.port
    await redis!.stop()
    const during: Timed[] = []
    for (let n = 0; n < 10; n++) during.push(await timedSave(sage!.url, `killed-${n}`))
    assert.deepEqual(during.map((r) => r.status), Array(10).fill(201))
    assert.ok(Math.max(...during.map((r) => r.ms)) < TIMEOUT_MS, JSON.stringify(during.map((r) => Math.round(r.ms))))
    redis = await startRedisServer(port)
    await waitFor('a queued save (202) once Redis is back', async () => (await timedSave(sage!.url, 'back')).status === 202, 20_000)
    assert.equal(sage!.child.exitCode, null)
  })

  test('killed while skipped (it had stopped answering first): the reconnect completes and saves queue again', async () => {
    const port = redis!.port
    redis!.signal('SIGSTOP')
    // One save waits out the command timeout, so every user skips Redis from here on.
    await timedSave(sage!.url, 'frozen-before-kill')
    const exited = once(redis!.child, 'exit')
    redis!.signal('SIGKILL')
    await exited
    redis = await startRedisServer(port)
    await waitFor('a queued save (202) once Redis is back', async () => (await timedSave(sage!.url, 'back-after-kill')).status === 202, 20_000)
  })
})
