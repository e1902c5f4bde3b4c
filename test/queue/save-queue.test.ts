import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { join } from 'node:path'
import { after, before, beforeEach, describe, test } from 'node:test'
import { promisify } from 'node:util'
import type { FastifyInstance } from 'fastify'
import type { Redis } from 'ioredis'
import type { Config } from '../../src/config.js'
import { createRedisClients, type RedisClients } from '../../src/redis/redis-clients.js'
import { queueKeys, SAVE_FIELD } from '../../src/queue/queue-keys.js'
import { createSaveQueue } from '../../src/queue/save-queue.js'
import { backends, buildTestApp, REPO_ROOT, testRedisUrl, type TestStore } from '../helper.js'
import { dropKeys, testKeyPrefix, testRedisClient } from '../support/redis.js'
import { freePort } from '../support/sage-process.js'
import { waitFor } from '../support/wait-for.js'

const redisUrl = testRedisUrl()
const run = promisify(execFile)
const ASYNC = { prefer: 'respond-async' }

/** `sage-memory queue …` as an operator runs it. */
async function queueCommand(prefix: string, ...args: string[]): Promise<string> {
  const { stdout } = await run(process.execPath, [join(REPO_ROOT, 'dist/src/cli.js'), 'queue', ...args], {
    env: { PATH: process.env.PATH ?? '', REDIS_URL: redisUrl!, REDIS_KEY_PREFIX: prefix }
  })
  return stdout
}

for (const backend of backends()) {
  describe(`asynchronous saves on ${backend.name}`, { skip: redisUrl ? false : 'TEST_REDIS_URL is not set' }, () => {
    const base = testKeyPrefix(`queue-${backend.name}`)
    let store: TestStore
    let redis: Redis
    let prefix: string
    let testNumber = 0
    const apps: FastifyInstance[] = []

    before(async () => {
      store = await backend.create()
      redis = testRedisClient(redisUrl!)
    })
    after(async () => {
      await Promise.all(apps.map((app) => app.close()))
      redis?.disconnect()
      await store?.drop()
      await dropKeys(redisUrl!, base)
    })
    beforeEach(async () => {
      await store.reset()
      prefix = `${base}${++testNumber}:`
    })

    const app = async (overrides: Partial<Config> = {}, options: { queueConsumer?: boolean } = {}) => {
      const built = await buildTestApp(store.db, { REDIS_URL: redisUrl, REDIS_KEY_PREFIX: prefix, QUEUE_CLAIM_IDLE_MS: 1000, ...overrides }, options)
      apps.push(built)
      return built
    }
    const count = async () => (await store.db.query<{ n: number }>('SELECT count(*)::int AS n FROM memories')).rows[0]!.n
    const keys = () => queueKeys(prefix)
    const drained = () => waitFor('the queue to drain', async () => (await redis.xlen(keys().stream)) === 0)

    test('single, batch and turn answer 202 with their ids, Preference-Applied, and land once drained', async () => {
      const sage = await app()
      const single = await sage.inject({ method: 'POST', url: '/v1/memories', headers: ASYNC, payload: { namespace: 'q', content: '  rotate the\u0000 API keys  ', tags: ['ops'] } })
      assert.equal(single.statusCode, 202, single.body)
      assert.equal(single.headers['preference-applied'], 'respond-async')
      assert.deepEqual(Object.keys(single.json()).sort(), ['id', 'status'])
      assert.equal(single.json().status, 'queued')

      const items = Array.from({ length: 5 }, (_, i) => ({ namespace: 'q', content: `batch item ${i}` }))
      const batch = await sage.inject({ method: 'POST', url: '/v1/memories/batch', headers: { prefer: 'wait=5, respond-async' }, payload: { items } })
      assert.equal(batch.statusCode, 202, batch.body)
      assert.equal(batch.json().status, 'queued')
      assert.equal(batch.json().items.length, 5)

      const turn = await sage.inject({ method: 'POST', url: '/v1/turns', headers: ASYNC, payload: { namespace: 'q', user_input: 'why?', assistant_response: 'because' } })
      assert.equal(turn.statusCode, 202, turn.body)
      assert.equal(turn.json().ids.length, 2)

      await drained()
      const read = (id: string) => sage.inject({ method: 'GET', url: `/v1/memories/${id}` })
      const memory = (await read(single.json().id)).json()
      assert.equal(memory.content, 'rotate the API keys')
      assert.deepEqual(memory.tags, ['ops'])
      for (const [i, { id }] of batch.json().items.entries()) assert.equal((await read(id)).json().content, `batch item ${i}`)
      const [user, assistant] = await Promise.all(turn.json().ids.map(async (id: string) => (await read(id)).json()))
      assert.deepEqual([user.role, user.content, assistant.role, assistant.content], ['user', 'why?', 'assistant', 'because'])
      assert.ok(assistant.created_at > user.created_at)
      assert.equal(await count(), 8)

      const metrics = (await sage.inject({ method: 'GET', url: '/metrics' })).body
      // One entry per request: the single save, the batch, the turn.
      assert.match(metrics, /sage_queue_entries_total\{event="queued"\} 3/)
      assert.match(metrics, /sage_queue_entries_total\{event="written"\} 3/)
      assert.match(metrics, /sage_queue_lag_seconds_count 3/)
      assert.match(metrics, /sage_queue_depth 0/)
      assert.match(metrics, /sage_queue_pending 0/)
      assert.match(metrics, /sage_queue_oldest_age_seconds 0/)
      assert.match(metrics, /sage_queue_dead_letters 0/)
      const ready = (await sage.inject({ method: 'GET', url: '/health/ready' })).json()
      assert.equal(ready.checks.redis.status, 'ok')
      assert.equal(typeof ready.checks.redis.latency_ms, 'number')
    })

    test('bad input with Prefer: respond-async is still a 400 and queues nothing', async () => {
      const sage = await app({}, { queueConsumer: false })
      const bad = [
        { url: '/v1/memories', payload: { content: '   \u0000  ' }, message: /^content must be a non-empty string/ },
        { url: '/v1/memories', payload: { content: 'x', role: 'robot' }, message: /role/ },
        { url: '/v1/memories', payload: { content: 'x', metadata: { blob: 'y'.repeat(20_000) } }, message: /metadata must be at most/ },
        {
          url: '/v1/memories/batch',
          payload: { items: [{ content: 'fine' }, { content: 'fine' }, { content: 'fine' }, { content: ' ' }] },
          message: /^items\[3\]\.content/
        },
        { url: '/v1/memories/batch', payload: { items: [] }, message: /items/ },
        { url: '/v1/turns', payload: { user_input: 'q', assistant_response: '\u0000' }, message: /content/ }
      ]
      for (const { url, payload, message } of bad) {
        const res = await sage.inject({ method: 'POST', url, headers: ASYNC, payload })
        assert.equal(res.statusCode, 400, `${url} ${res.body}`)
        assert.equal(res.json().code, 'SAGE_VALIDATION')
        assert.match(res.json().message, message)
        assert.equal(res.headers['preference-applied'], undefined)
      }
      assert.equal(await redis.xlen(keys().stream), 0)
      assert.equal(await count(), 0)
      // The same route takes a good save, so the 400s above were the input's doing.
      assert.equal((await sage.inject({ method: 'POST', url: '/v1/memories', headers: ASYNC, payload: { content: 'good' } })).statusCode, 202)
      assert.equal(await redis.xlen(keys().stream), 1)
    })

    test('a repeated Idempotency-Key answers the first id while queued, that id lands, and a repeat after it landed answers as a synchronous save', async () => {
      // Producers without a consumer: the first save is still queued when it is repeated.
      const [first, second] = [await app({}, { queueConsumer: false }), await app({}, { queueConsumer: false })]
      const post = (sage: FastifyInstance, url: string, key: string, payload: object) =>
        sage.inject({ method: 'POST', url, headers: { ...ASYNC, 'idempotency-key': key }, payload })
      const single = { namespace: 'idem', content: 'saved once' }
      const batch = { items: [{ namespace: 'idem', content: 'b0' }, { namespace: 'idem', content: 'b1' }] }
      const turn = { namespace: 'idem', user_input: 'q?', assistant_response: 'a.' }

      const queued = await post(first, '/v1/memories', 'k-single', single)
      assert.equal(queued.statusCode, 202, queued.body)
      const queuedBatch = await post(first, '/v1/memories/batch', 'k-batch', batch)
      const queuedTurn = await post(first, '/v1/turns', 'k-turn', turn)
      // Repeats through either replica, concurrently too, answer 202 with the first ids and queue nothing more.
      const repeats = await Promise.all([first, second, second].map((sage) => post(sage, '/v1/memories', 'k-single', single)))
      for (const repeat of repeats) {
        assert.equal(repeat.statusCode, 202, repeat.body)
        assert.equal(repeat.json().id, queued.json().id)
      }
      assert.deepEqual((await post(second, '/v1/memories/batch', 'k-batch', batch)).json().items, queuedBatch.json().items)
      assert.deepEqual((await post(second, '/v1/turns', 'k-turn', turn)).json().ids, queuedTurn.json().ids)
      assert.equal(await redis.xlen(keys().stream), 3)

      await app()
      await drained()
      assert.equal(await count(), 5)
      const read = await second.inject({ method: 'GET', url: `/v1/memories/${queued.json().id}` })
      assert.equal(read.statusCode, 200, 'the id the repeats were given exists once the queue has drained')
      for (const { id } of queuedBatch.json().items) assert.equal((await second.inject({ method: 'GET', url: `/v1/memories/${id}` })).statusCode, 200)

      // Once written, a repeat is answered from the store, exactly as without Prefer: respond-async.
      const late = await post(second, '/v1/memories', 'k-single', single)
      assert.equal(late.statusCode, 200, late.body)
      assert.deepEqual(late.json(), { id: queued.json().id, created: false })
      const lateBatch = await post(second, '/v1/memories/batch', 'k-batch', batch)
      assert.equal(lateBatch.statusCode, 201)
      assert.deepEqual(lateBatch.json().items, queuedBatch.json().items.map(({ id }: { id: string }) => ({ id, created: false })))
      const lateTurn = await post(second, '/v1/turns', 'k-turn', turn)
      assert.equal(lateTurn.statusCode, 200)
      assert.deepEqual(lateTurn.json().ids, queuedTurn.json().ids)
      // Even with its claim gone from Redis, the store still knows the key.
      await redis.del(`${keys().idempotency}idem|k-single`)
      assert.deepEqual((await post(first, '/v1/memories', 'k-single', single)).json(), { id: queued.json().id, created: false })
      assert.equal(await redis.xlen(keys().stream), 0)
      assert.equal(await count(), 5)
    })

    test('an entry delivered twice (replayed with the same ids) is written once', async () => {
      const producer = await app({}, { queueConsumer: false })
      const res = await producer.inject({ method: 'POST', url: '/v1/memories/batch', headers: ASYNC, payload: { items: [{ content: 'one' }, { content: 'two' }] } })
      assert.equal(res.statusCode, 202)
      // A copy of every entry, as a replay after a crash between commit and acknowledgement would make.
      for (const [, fields] of await redis.xrange(keys().stream, '-', '+')) await redis.xadd(keys().stream, '*', SAVE_FIELD, fields[1]!)
      const consumer = await app()
      await drained()
      assert.equal(await count(), 2)
      const metrics = (await consumer.inject({ method: 'GET', url: '/metrics' })).body
      assert.match(metrics, /sage_queue_entries_total\{event="written"\} 1/)
      assert.match(metrics, /sage_queue_entries_total\{event="duplicate"\} 1/)
    })

    test('a queued save that lands invalidates the namespace\'s cached recalls', async () => {
      const sage = await app()
      const recall = async () => (await sage.inject({ method: 'POST', url: '/v1/recall', payload: { namespace: 'cache', query: 'flaky websocket test' } })).json().results
      for (let i = 0; i < 3; i++) assert.deepEqual(await recall(), []) // cached by now
      const saved = await sage.inject({ method: 'POST', url: '/v1/memories', headers: ASYNC, payload: { namespace: 'cache', content: 'the flaky websocket test was a race' } })
      await drained()
      assert.deepEqual((await recall()).map((r: { id: string }) => r.id), [saved.json().id])
    })

    test('a save that keeps failing moves to the dead-letter stream, the saves read with it land, and an operator can replay it', async () => {
      await store.db.query("ALTER TABLE memories ADD CONSTRAINT test_no_poison CHECK (content <> 'poison')")
      try {
        // Queued while no consumer runs, so the three are read and written together.
        const producer = await app({}, { queueConsumer: false })
        const ids: string[] = []
        for (const content of ['fine one', 'poison', 'fine two']) {
          const res = await producer.inject({ method: 'POST', url: '/v1/memories', headers: ASYNC, payload: { content } })
          assert.equal(res.statusCode, 202)
          ids.push(res.json().id)
        }
        const poisonId = ids[1]!
        const sage = await app({ QUEUE_MAX_ATTEMPTS: 3 })
        await waitFor('the dead letter', async () => (await redis.xlen(keys().deadLetters)) === 1)
        await drained()
        assert.equal(await count(), 2)
        const poisonBatch = await producer.inject({
          method: 'POST', url: '/v1/memories/batch', headers: ASYNC, payload: { items: [{ content: 'fine three' }, { content: 'poison' }] }
        })
        assert.equal(poisonBatch.statusCode, 202)
        await waitFor('the batch to be dead-lettered whole', async () => (await redis.xlen(keys().deadLetters)) === 2)
        assert.equal(await count(), 2, 'a queued batch lands all or nothing')
        assert.equal(await redis.hlen(keys().attempts), 0)

        const listed = JSON.parse(await queueCommand(prefix, 'dead-letters', '--json'))
        assert.equal(listed.length, 2)
        assert.equal(listed[0].attempts, 3)
        assert.match(listed[0].error, /test_no_poison/)
        assert.equal(listed[0].save.memories[0].id, poisonId)
        assert.equal(listed[1].save.memories.length, 2)
        assert.match(await queueCommand(prefix, 'status'), /dead letters {2}2/)
        assert.match((await sage.inject({ method: 'GET', url: '/metrics' })).body, /sage_queue_entries_total\{event="dead_lettered"\} 2/)

        // The operator fixes the cause, then replays: the memory lands with the id the caller was given.
        await store.db.query('ALTER TABLE memories DROP CONSTRAINT test_no_poison')
        assert.match(await queueCommand(prefix, 'replay', listed[0].id), /replayed 1 dead letter/)
        await waitFor('the replayed save', async () => (await sage.inject({ method: 'GET', url: `/v1/memories/${poisonId}` })).statusCode === 200)
        assert.equal(await redis.xlen(keys().deadLetters), 1)
        assert.match(await queueCommand(prefix, 'replay', '--all'), /replayed 1 dead letter/)
        await waitFor('the replayed batch', async () => (await count()) === 5)
        assert.equal(await redis.xlen(keys().deadLetters), 0)
      } finally {
        await store.db.query('ALTER TABLE memories DROP CONSTRAINT IF EXISTS test_no_poison')
      }
    })

    test('entries left pending by a consumer that died are claimed by another after the idle time', async () => {
      const producer = await app({}, { queueConsumer: false })
      for (let i = 0; i < 3; i++) {
        assert.equal((await producer.inject({ method: 'POST', url: '/v1/memories', headers: ASYNC, payload: { content: `orphan ${i}` } })).statusCode, 202)
      }
      await redis.xgroup('CREATE', keys().stream, keys().group, '0', 'MKSTREAM').catch(() => undefined)
      // A consumer that read them and died before writing.
      const read = (await redis.xreadgroup('GROUP', keys().group, 'dead-consumer', 'COUNT', 10, 'STREAMS', keys().stream, '>')) as Array<[string, unknown[]]>
      assert.equal(read[0]![1].length, 3)
      const started = Date.now()
      await app({ QUEUE_CLAIM_IDLE_MS: 1000 })
      await drained()
      assert.ok(Date.now() - started >= 900, 'claimed before the idle time')
      assert.equal(await count(), 3)
      const pending = (await redis.xpending(keys().stream, keys().group)) as [number, ...unknown[]]
      assert.equal(pending[0], 0)
    })

    test('queue status lists the live consumers: a dead one leaves after the claim time, a stopped one at once', async () => {
      const producer = await app({}, { queueConsumer: false })
      assert.equal((await producer.inject({ method: 'POST', url: '/v1/memories', headers: ASYNC, payload: { content: 'left by the dead' } })).statusCode, 202)
      await redis.xgroup('CREATE', keys().stream, keys().group, '0', 'MKSTREAM').catch(() => undefined)
      // A replica that sent its heartbeat, read an entry and was killed.
      await redis.zadd(keys().consumers, Date.now(), 'dead-replica')
      await redis.xreadgroup('GROUP', keys().group, 'dead-replica', 'COUNT', 10, 'STREAMS', keys().stream, '>')
      const status = async () => JSON.parse(await queueCommand(prefix, 'status', '--json')) as { consumers: Array<{ name: string; pending: number; seen_ms: number | null }> }
      assert.deepEqual((await status()).consumers.map((c) => [c.name, c.pending]), [['dead-replica', 1]])

      const first = await app({ QUEUE_CLAIM_IDLE_MS: 1000 })
      const second = await app({ QUEUE_CLAIM_IDLE_MS: 1000 })
      await drained()
      const live = [first.saveQueue.consumer, second.saveQueue.consumer].sort()
      const names = await waitFor<Array<{ name: string; seen_ms: number | null }> | undefined>('the dead consumer to leave', async () => {
        const consumers = (await status()).consumers
        return consumers.some((c) => c.name === 'dead-replica') ? undefined : consumers
      }, 10_000, 200)
      // A live consumer shows up once it has read something; an idle one stays, since its heartbeat goes on.
      assert.ok(names!.every((c) => live.includes(c.name) && c.seen_ms !== null && c.seen_ms < 1000), JSON.stringify(names))
      await new Promise((resolve) => setTimeout(resolve, 2500))
      assert.deepEqual((await status()).consumers.map((c) => c.name).sort(), names!.map((c) => c.name).sort(), 'idle live consumers are kept')

      await second.close()
      assert.ok(!(await status()).consumers.some((c) => c.name === second.saveQueue.consumer), 'a stopped replica leaves at once')
      assert.equal(await redis.zscore(keys().consumers, second.saveQueue.consumer), null)
    })

    test('while the store refuses writes the entries stay pending, are not dead-lettered, and land when it is back', async () => {
      const sage = await app({}, { queueConsumer: false })
      let outages = 4
      const clients: RedisClients = await createRedisClients({ url: redisUrl!, keyPrefix: prefix, commandTimeoutMs: 1000 }, { warn: () => undefined, info: () => undefined })
      const queue = createSaveQueue({
        redis: clients,
        memories: {
          savePrepared: (memories, kind) => {
            if (outages-- > 0) return Promise.reject(Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), { code: 'ECONNREFUSED' }))
            return sage.memories.savePrepared(memories, kind)
          },
          idsByIdempotencyKey: sage.memories.idsByIdempotencyKey
        },
        metrics: sage.metrics,
        log: sage.log,
        batchSize: 100,
        claimIdleMs: 1000,
        maxAttempts: 2
      })
      try {
        assert.equal((await sage.inject({ method: 'POST', url: '/v1/memories/batch', headers: ASYNC, payload: { items: [{ content: 'a' }, { content: 'b' }] } })).statusCode, 202)
        await queue.start()
        await waitFor('the outage to pass', () => outages < 0)
        await drained()
        assert.equal(await count(), 2)
        assert.equal(await redis.xlen(keys().deadLetters), 0)
        assert.match((await sage.inject({ method: 'GET', url: '/metrics' })).body, /sage_queue_entries_total\{event="retried"\} [1-9]/)
      } finally {
        await queue.stop()
        await clients.close()
      }
    })

    test('with Redis unreachable an asynchronous save is made at once and answered 201', async () => {
      const closed = await freePort()
      const sage = await app({ REDIS_URL: `redis://127.0.0.1:${closed}/0`, REDIS_COMMAND_TIMEOUT_MS: 200 })
      const single = await sage.inject({ method: 'POST', url: '/v1/memories', headers: ASYNC, payload: { content: 'no redis' } })
      assert.equal(single.statusCode, 201, single.body)
      assert.equal(single.headers['preference-applied'], undefined)
      assert.equal(single.json().created, true)
      const batch = await sage.inject({ method: 'POST', url: '/v1/memories/batch', headers: ASYNC, payload: { items: [{ content: 'x' }, { content: 'y' }] } })
      assert.equal(batch.statusCode, 201)
      const turn = await sage.inject({ method: 'POST', url: '/v1/turns', headers: ASYNC, payload: { user_input: 'q', assistant_response: 'a' } })
      assert.equal(turn.statusCode, 201)
      assert.equal(turn.json().ids.length, 2)
      assert.equal(await count(), 5)
      const recall = await sage.inject({ method: 'POST', url: '/v1/recall', payload: { query: 'no redis' } })
      assert.equal(recall.statusCode, 200)
      const ready = await sage.inject({ method: 'GET', url: '/health/ready' })
      assert.equal(ready.statusCode, 200, 'Redis down does not make the service unready')
      assert.equal(ready.json().checks.redis.status, 'error')
      assert.match((await sage.inject({ method: 'GET', url: '/metrics' })).body, /sage_queue_entries_total\{event="fallback"\} 3/)
    })
  })
}

describe('asynchronous saves without Redis', () => {
  test('Prefer: respond-async is answered 201 by a synchronous save', async () => {
    const [backend] = backends()
    const store = await backend!.create()
    const sage = await buildTestApp(store.db)
    try {
      const res = await sage.inject({ method: 'POST', url: '/v1/memories', headers: ASYNC, payload: { content: 'no queue configured' } })
      assert.equal(res.statusCode, 201)
      assert.equal(res.headers['preference-applied'], undefined)
      assert.equal((await sage.inject({ method: 'GET', url: `/v1/memories/${res.json().id}` })).statusCode, 200)
      const ready = (await sage.inject({ method: 'GET', url: '/health/ready' })).json()
      assert.equal(ready.checks.redis, 'disabled')
    } finally {
      await sage.close()
      await store.drop()
    }
  })
})
