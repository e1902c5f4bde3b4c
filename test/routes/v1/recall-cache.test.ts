import assert from 'node:assert/strict'
import { after, before, beforeEach, describe, test } from 'node:test'
import type { FastifyInstance } from 'fastify'
import type { Config } from '../../../src/config.js'
import { backends, buildTestApp, testRedisUrl, type TestStore } from '../../helper.js'
import { dropKeys, testKeyPrefix } from '../../support/redis.js'

const redisUrl = testRedisUrl()

const setups: Array<{ name: string; shared: boolean; config: () => Partial<Config> }> = [{ name: 'in process', shared: false, config: () => ({}) }]
const prefix = testKeyPrefix('recall-routes')
if (redisUrl) setups.push({ name: 'through Redis', shared: true, config: () => ({ REDIS_URL: redisUrl, REDIS_KEY_PREFIX: prefix }) })

const ids = (res: { json(): { results: Array<{ id: string }> } }) => res.json().results.map((r) => r.id)

for (const backend of backends()) {
  // Without Redis only the embedded store caches recalls: replicas on one Postgres could not see each other's deletes.
  for (const setup of setups.filter((s) => s.shared || backend.name === 'pglite')) {
    describe(`cached recall on ${backend.name}, ${setup.name}`, () => {
      let store: TestStore
      let app: FastifyInstance
      let other: FastifyInstance | undefined
      before(async () => {
        store = await backend.create()
        app = await buildTestApp(store.db, setup.config())
        // A second replica on the same store and Redis.
        if (setup.shared) other = await buildTestApp(store.db, setup.config())
      })
      after(async () => {
        await app?.close()
        await other?.close()
        await store?.drop()
        if (setup.shared) await dropKeys(redisUrl!, prefix)
      })
      beforeEach(() => store.reset())

      let n = 0
      const namespace = () => `ns-${backend.name}-${++n}`
      const save = (sage: FastifyInstance, ns: string, content: string, extra: object = {}) =>
        sage.inject({ method: 'POST', url: '/v1/memories', payload: { namespace: ns, content, ...extra } })
      const recall = (sage: FastifyInstance, ns: string, body: object = {}) =>
        sage.inject({ method: 'POST', url: '/v1/recall', payload: { namespace: ns, query: 'rotate the api keys', ...body } })
      const recallHits = async (sage: FastifyInstance) => {
        const match = /sage_cache_hits_total\{cache="recall"\} (\d+)/.exec((await sage.inject({ method: 'GET', url: '/metrics' })).body)
        return Number(match?.[1] ?? 0)
      }

      test('repeated recalls are answered from the cache', async () => {
        const ns = namespace()
        await save(app, ns, 'rotate the api keys every 90 days')
        const first = await recall(app, ns)
        const hitsBefore = await recallHits(app)
        for (let i = 0; i < 3; i++) {
          const again = await recall(app, ns)
          assert.equal(again.statusCode, 200)
          assert.deepEqual(ids(again), ids(first))
          assert.equal(typeof again.json().took_ms, 'number')
        }
        assert.ok((await recallHits(app)) >= hitsBefore + 2, 'repeats were not served from the cache')
      })

      test('a recall after a delete never returns the deleted memory', async () => {
        const ns = namespace()
        const keep = (await save(app, ns, 'rotate the api keys with the runbook')).json().id
        const gone = (await save(app, ns, 'rotate the api keys every 90 days')).json().id
        for (let i = 0; i < 3; i++) assert.deepEqual(new Set(ids(await recall(app, ns))), new Set([keep, gone]))
        assert.equal((await app.inject({ method: 'DELETE', url: `/v1/memories/${gone}` })).statusCode, 204)
        assert.deepEqual(ids(await recall(app, ns)), [keep])
        if (other) assert.deepEqual(ids(await recall(other, ns)), [keep], 'the other replica served a stale recall')
        // Forgetting the whole namespace, from the other replica when there is one.
        const deleted = await (other ?? app).inject({ method: 'DELETE', url: `/v1/memories?namespace=${ns}` })
        assert.equal(deleted.json().deleted, 1)
        assert.deepEqual(ids(await recall(app, ns)), [])
      })

      test('a recall of context format and one with filters are invalidated too', async () => {
        const ns = namespace()
        const id = (await save(app, ns, 'rotate the api keys', { tags: ['ops'] })).json().id
        const bodies = [{ format: 'context' }, { filter: { tags: ['ops'] } }, { mode: 'text' }, { k: 1 }]
        for (const body of bodies) for (let i = 0; i < 2; i++) assert.deepEqual(ids(await recall(app, ns, body)), [id])
        await app.inject({ method: 'DELETE', url: `/v1/memories/${id}` })
        for (const body of bodies) {
          const res = await recall(app, ns, body)
          assert.deepEqual(ids(res), [], JSON.stringify(body))
          if ('format' in body) assert.doesNotMatch(res.json().context ?? '', /rotate/)
        }
      })

      test('a save invalidates the namespace\'s cached recalls, and only that namespace\'s', async () => {
        const ns = namespace()
        const elsewhere = namespace()
        await save(app, elsewhere, 'rotate the api keys elsewhere')
        for (let i = 0; i < 2; i++) {
          assert.deepEqual(ids(await recall(app, ns)), [])
          await recall(app, elsewhere)
        }
        const hits = await recallHits(app)
        const id = (await save(other ?? app, ns, 'rotate the api keys now')).json().id
        assert.deepEqual(ids(await recall(app, ns)), [id])
        await recall(app, elsewhere)
        assert.equal(await recallHits(app), hits + 1, 'the other namespace should still be cached')
        const batch = await app.inject({ method: 'POST', url: '/v1/memories/batch', payload: { items: [{ namespace: ns, content: 'rotate the api keys in a batch' }] } })
        assert.equal(batch.statusCode, 201)
        assert.equal(ids(await recall(app, ns)).length, 2)
        const turn = await app.inject({ method: 'POST', url: '/v1/turns', payload: { namespace: ns, user_input: 'how to rotate the api keys?', assistant_response: 'use the runbook' } })
        assert.equal(turn.statusCode, 201)
        assert.ok(ids(await recall(app, ns)).includes(turn.json().ids[0]))
      })
    })
  }
}

describe('recall on Postgres without Redis', { skip: backends().some((b) => b.name === 'postgres') ? false : 'TEST_DATABASE_URL is not set' }, () => {
  test('is not cached, since another replica\'s delete could not be seen', async () => {
    const store = await backends().find((b) => b.name === 'postgres')!.create()
    const [a, b] = [await buildTestApp(store.db), await buildTestApp(store.db)]
    try {
      const id = (await a.inject({ method: 'POST', url: '/v1/memories', payload: { namespace: 'nr', content: 'rotate the api keys' } })).json().id
      const recall = () => a.inject({ method: 'POST', url: '/v1/recall', payload: { namespace: 'nr', query: 'rotate the api keys' } })
      for (let i = 0; i < 3; i++) assert.deepEqual(ids(await recall()), [id])
      assert.equal((await b.inject({ method: 'DELETE', url: `/v1/memories/${id}` })).statusCode, 204)
      assert.deepEqual(ids(await recall()), [])
      assert.doesNotMatch((await a.inject({ method: 'GET', url: '/metrics' })).body, /sage_cache_(hits|misses)_total\{cache="recall"\}/)
    } finally {
      await a.close()
      await b.close()
      await store.drop()
    }
  })
})
