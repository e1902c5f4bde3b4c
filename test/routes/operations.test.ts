import assert from 'node:assert/strict'
import { Writable } from 'node:stream'
import { describe, test } from 'node:test'
import { buildApp, loggerOptions, logsArePretty } from '../../src/app.js'
import { backends, testConfig, useTestApp } from '../helper.js'

for (const backend of backends()) {
  describe(`operations on ${backend.name}`, () => {
    const suite = useTestApp(backend)

    test('GET /health is alive', async () => {
      const res = await suite.app.inject({ method: 'GET', url: '/health' })
      assert.equal(res.statusCode, 200)
      assert.deepEqual(res.json(), { status: 'ok' })
    })

    test('GET /health/ready checks the database and the embedder', async () => {
      const res = await suite.app.inject({ method: 'GET', url: '/health/ready' })
      assert.equal(res.statusCode, 200, res.body)
      const body = res.json()
      assert.equal(body.status, 'ok')
      assert.equal(body.checks.database.status, 'ok')
      assert.equal(typeof body.checks.database.latency_ms, 'number')
      assert.equal(body.checks.embedder.status, 'ok')
      assert.match(body.checks.embedder.id, /^lexical-v1\//)
      assert.equal(body.checks.redis, 'disabled')
    })

    test('GET /metrics exposes HTTP durations by route pattern and Sage\'s own metrics', async () => {
      const saved = await suite.app.inject({ method: 'POST', url: '/v1/memories', payload: { content: 'metrics probe' } })
      await suite.app.inject({ method: 'GET', url: `/v1/memories/${saved.json().id}` })
      await suite.app.inject({ method: 'POST', url: '/v1/recall', payload: { query: 'metrics probe', mode: 'text' } })
      const res = await suite.app.inject({ method: 'GET', url: '/metrics' })
      assert.equal(res.statusCode, 200)
      assert.match(res.headers['content-type'] as string, /text\/plain/)
      const text = res.body
      assert.match(text, /http_request_duration_seconds_bucket\{[^}]*method="GET"[^}]*route="\/v1\/memories\/:id"[^}]*status_code="200"/)
      assert.doesNotMatch(text, new RegExp(`route="/v1/memories/${saved.json().id}"`))
      assert.match(text, /sage_saves_total\{kind="single",outcome="created"\} 1/)
      assert.match(text, /sage_recall_duration_seconds_count\{mode="text"\} 1/)
      assert.match(text, /sage_embedding_duration_seconds_count\{embedder="lexical-v1\/384",outcome="ok"\}/)
      assert.match(text, /sage_db_pool_connections\{state="total"\}/)
      assert.match(text, /sage_backfill_backlog/)
      assert.match(text, /process_cpu_user_seconds_total/)
      assert.match(text, /nodejs_eventloop_lag_seconds/)
    })

    test('GET /docs serves the OpenAPI document with every route', async () => {
      const page = await suite.app.inject({ method: 'GET', url: '/docs' })
      assert.ok([200, 302].includes(page.statusCode))
      const doc = (await suite.app.inject({ method: 'GET', url: '/docs/json' })).json()
      assert.equal(doc.openapi.slice(0, 2), '3.')
      for (const path of ['/v1/memories', '/v1/memories/batch', '/v1/memories/{id}', '/v1/recall', '/v1/turns', '/v1/sessions', '/health', '/health/ready', '/metrics']) {
        assert.ok(doc.paths[path], `missing ${path}`)
      }
      assert.ok(doc.paths['/v1/recall'].post.requestBody)
    })
  })
}

describe('request logs', () => {
  test('probes and scrapes are logged at debug, other requests at info; pretty lines only on a terminal', async () => {
    const store = await backends()[0]!.create()
    const lines: string[] = []
    const config = testConfig({ LOG_LEVEL: 'info' })
    const stream = new Writable({ write: (chunk, _enc, done) => { lines.push(chunk.toString()); done() } })
    const app = await buildApp(config, { database: store.db, backfill: false, logger: { ...(loggerOptions(config) as object), stream } })
    try {
      for (const url of ['/health', '/health/ready', '/metrics', '/v1/memories?namespace=logs']) await app.inject({ method: 'GET', url })
      const logged = lines.map((line) => JSON.parse(line) as { msg: string; req?: { url: string } }).filter((line) => line.msg === 'request completed')
      assert.deepEqual(logged.map((line) => line.req?.url), ['/v1/memories?namespace=logs'])
    } finally {
      await app.close()
      await store.drop()
    }
    assert.equal(logsArePretty({ LOG_FORMAT: 'auto' }, true), true)
    assert.equal(logsArePretty({ LOG_FORMAT: 'auto' }, false), false)
    assert.equal(logsArePretty({ LOG_FORMAT: 'json' }, true), false)
    assert.equal(logsArePretty({ LOG_FORMAT: 'pretty' }, false), true)
  })
})
