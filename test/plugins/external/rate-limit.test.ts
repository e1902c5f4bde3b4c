import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import type { FastifyInstance, LightMyRequestResponse } from 'fastify'
import type { Config } from '../../../src/config.js'
import { backends, buildTestApp, testRedisUrl, type TestStore } from '../../helper.js'
import { dropKeys, testKeyPrefix } from '../../support/redis.js'

const redisUrl = testRedisUrl()
const KEY_A = 'a'.repeat(32)
const KEY_B = 'b'.repeat(32)

function assertLimited(res: LightMyRequestResponse, max: number): void {
  assert.equal(res.statusCode, 429, res.body)
  const body = res.json()
  assert.deepEqual(Object.keys(body).sort(), ['code', 'error', 'message', 'statusCode'])
  assert.equal(body.statusCode, 429)
  assert.equal(body.error, 'Too Many Requests')
  assert.equal(body.code, 'SAGE_RATE_LIMITED')
  assert.match(body.message, new RegExp(`rate limit of ${max} requests per \\d+ s exceeded`))
  assert.match(String(res.headers['retry-after']), /^\d+$/)
  assert.ok(Number(res.headers['retry-after']) > 0)
  assert.equal(res.headers['x-ratelimit-limit'], String(max))
  assert.equal(res.headers['x-ratelimit-remaining'], '0')
  assert.match(String(res.headers['x-ratelimit-reset']), /^\d+$/)
}

describe('rate limits', () => {
  let store: TestStore
  const apps: FastifyInstance[] = []
  const prefix = testKeyPrefix('rate-limit')
  let n = 0
  before(async () => {
    store = await backends()[0]!.create()
  })
  after(async () => {
    await Promise.all(apps.map((app) => app.close()))
    await store?.drop()
    if (redisUrl) await dropKeys(redisUrl, prefix)
  })
  const app = async (overrides: Partial<Config>) => {
    const built = await buildTestApp(store.db, { RATE_LIMIT_WINDOW_MS: 60_000, ...overrides })
    apps.push(built)
    return built
  }
  const list = (sage: FastifyInstance, headers: Record<string, string> = {}, remoteAddress?: string) =>
    sage.inject({ method: 'GET', url: '/v1/memories?namespace=rl', headers, remoteAddress })

  test('per address: the request past the limit is a 429 in the contract\'s shape, with Retry-After and x-ratelimit-*', async () => {
    const sage = await app({ RATE_LIMIT_MAX: 3 })
    for (let i = 0; i < 3; i++) {
      const res = await list(sage)
      assert.equal(res.statusCode, 200)
      assert.equal(res.headers['x-ratelimit-limit'], '3')
      assert.equal(res.headers['x-ratelimit-remaining'], String(2 - i))
    }
    assertLimited(await list(sage), 3)
    // Writes count against the same allowance.
    assertLimited(await sage.inject({ method: 'POST', url: '/v1/memories', payload: { content: 'x' } }), 3)
    // Another address has its own.
    assert.equal((await list(sage, {}, '10.0.0.7')).statusCode, 200)
  })

  test('health, readiness, metrics and the API document are never limited', async () => {
    const sage = await app({ RATE_LIMIT_MAX: 1 })
    await list(sage)
    assertLimited(await list(sage), 1)
    for (const url of ['/health', '/health/ready', '/metrics', '/docs/json']) {
      for (let i = 0; i < 5; i++) {
        const res = await sage.inject({ method: 'GET', url })
        assert.equal(res.statusCode, 200, `${url}: ${res.body.slice(0, 200)}`)
        assert.equal(res.headers['x-ratelimit-limit'], undefined, url)
      }
    }
  })

  test('hooks are limited like /v1: the call past the limit is passed on as a 429', async () => {
    const sage = await app({ RATE_LIMIT_MAX: 2 })
    const hook = () => sage.inject({ method: 'POST', url: '/hooks/claude-code?namespace=rl', payload: { hook_event_name: 'SessionEnd', session_id: 's' } })
    for (let i = 0; i < 2; i++) {
      const res = await hook()
      assert.equal(res.statusCode, 200, res.body)
      assert.equal(res.headers['x-ratelimit-limit'], '2')
    }
    assertLimited(await hook(), 2)
    // One allowance for both surfaces.
    assertLimited(await list(sage), 2)
  })

  test('per API key when keys are configured: one key\'s use does not spend another\'s', async () => {
    const sage = await app({ RATE_LIMIT_MAX: 2, SAGE_API_KEYS: `alpha:${KEY_A}=*;beta:${KEY_B}=*` })
    const as = (key: string) => ({ authorization: `Bearer ${key}` })
    assert.equal((await list(sage, as(KEY_A))).statusCode, 200)
    assert.equal((await list(sage, as(KEY_A))).statusCode, 200)
    assertLimited(await list(sage, as(KEY_A)), 2)
    assert.equal((await list(sage, as(KEY_B))).statusCode, 200, 'beta has its own allowance')
    assert.equal((await list(sage, as(KEY_B))).statusCode, 200)
    assertLimited(await list(sage, as(KEY_B)), 2)
  })

  test('failed authentication counts per address: key guessing is a 429 with Retry-After, on every route that needs a key', async () => {
    const sage = await app({ RATE_LIMIT_MAX: 3, SAGE_API_KEYS: `alpha:${KEY_A}=*` })
    const wrong = { authorization: `Bearer ${'x'.repeat(32)}` }
    for (let i = 0; i < 3; i++) assert.equal((await list(sage, wrong)).statusCode, 401)
    assertLimited(await list(sage, wrong), 3)
    // No key at all, another key, and the hook and MCP routes spend the same allowance.
    assertLimited(await list(sage), 3)
    assertLimited(await list(sage, { authorization: `Bearer ${'y'.repeat(32)}` }), 3)
    assertLimited(await sage.inject({ method: 'POST', url: '/hooks/claude-code', headers: wrong, payload: {} }), 3)
    assertLimited(await sage.inject({ method: 'POST', url: '/mcp', headers: { ...wrong, accept: 'application/json, text/event-stream' }, payload: {} }), 3)
    // Another address still gets its 401s; a valid key from the guessing address keeps its own limit.
    assert.equal((await list(sage, wrong, '10.0.0.8')).statusCode, 401)
    const valid = { authorization: `Bearer ${KEY_A}` }
    for (let i = 0; i < 3; i++) assert.equal((await list(sage, valid)).statusCode, 200)
    assertLimited(await list(sage, valid), 3)
    // Probes need no key and are not refused.
    assert.equal((await sage.inject({ method: 'GET', url: '/health' })).statusCode, 200)
  })

  test('failed authentication is not limited with RATE_LIMIT_MAX=0', async () => {
    const sage = await app({ RATE_LIMIT_MAX: 0, SAGE_API_KEYS: `alpha:${KEY_A}=*` })
    for (let i = 0; i < 10; i++) assert.equal((await list(sage)).statusCode, 401)
  })

  describe('shared through Redis', { skip: redisUrl ? false : 'TEST_REDIS_URL is not set' }, () => {
    test('two replicas on one Redis count against one limit', async () => {
      const shared = { RATE_LIMIT_MAX: 4, REDIS_URL: redisUrl, REDIS_KEY_PREFIX: `${prefix}${++n}:` }
      const [a, b] = [await app(shared), await app(shared)]
      const statuses: number[] = []
      for (let i = 0; i < 6; i++) statuses.push((await list(i % 2 === 0 ? a! : b!)).statusCode)
      assert.deepEqual(statuses, [200, 200, 200, 200, 429, 429])
      assertLimited(await list(b!), 4)
    })

    test('two replicas on one Redis count failed authentications against one limit per address', async () => {
      const shared = { RATE_LIMIT_MAX: 2, REDIS_URL: redisUrl, REDIS_KEY_PREFIX: `${prefix}${++n}:`, SAGE_API_KEYS: `alpha:${KEY_A}=*` }
      const [a, b] = [await app(shared), await app(shared)]
      const wrong = { authorization: `Bearer ${'x'.repeat(32)}` }
      const statuses: number[] = []
      for (let i = 0; i < 4; i++) statuses.push((await list(i % 2 === 0 ? a! : b!, wrong)).statusCode)
      assert.deepEqual(statuses, [401, 401, 429, 429])
      assertLimited(await list(a!, wrong), 2)
      assert.equal((await list(b!, { authorization: `Bearer ${KEY_A}` })).statusCode, 200)
    })

    test('with Redis unreachable requests are served, not refused', async () => {
      const sage = await app({ RATE_LIMIT_MAX: 1, REDIS_URL: 'redis://127.0.0.1:1/0', REDIS_COMMAND_TIMEOUT_MS: 100 })
      for (let i = 0; i < 3; i++) assert.equal((await list(sage)).statusCode, 200)
    })
  })
})
