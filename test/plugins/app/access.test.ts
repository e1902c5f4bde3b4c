import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Writable } from 'node:stream'
import { after, before, beforeEach, describe, test } from 'node:test'
import type { FastifyInstance, InjectOptions } from 'fastify'
import { buildApp, loggerOptions } from '../../../src/app.js'
import { backends, buildTestApp, testConfig, type TestStore } from '../../helper.js'
import { processStore } from '../../support/process-store.js'
import { startSage } from '../../support/sage-process.js'

const SECRETS = {
  alice: 'alice-secret-0123456789abcdef',
  aliceAdmin: 'alice-admin-secret-0123456789',
  bob: 'bob-secret-0123456789abcdef00',
  root: 'root-secret-0123456789abcdef00'
}
const KEYS = [
  `alice:${SECRETS.alice}=team-a/*`,
  `alice-admin:${SECRETS.aliceAdmin}=team-a/*:delete`,
  `bob:${SECRETS.bob}=team-b/*:delete`,
  `root:${SECRETS.root}=*:delete`
].join(';')

const bearer = (secret: string) => ({ authorization: `Bearer ${secret}` })

for (const backend of backends()) {
  describe(`access with keys on ${backend.name}`, () => {
    let store: TestStore
    let app: FastifyInstance
    before(async () => {
      store = await backend.create()
      app = await buildTestApp(store.db, { SAGE_API_KEYS: KEYS })
    })
    after(async () => {
      await app?.close()
      await store?.drop()
    })
    beforeEach(async () => {
      await store.reset()
      await store.db.query('TRUNCATE delete_audit')
    })

    const as = (secret: string, options: InjectOptions) => app.inject({ ...options, headers: { ...options.headers, ...bearer(secret) } })
    const save = async (secret: string, payload: object) => {
      const res = await as(secret, { method: 'POST', url: '/v1/memories', payload })
      assert.equal(res.statusCode, 201, res.body)
      return res.json().id as string
    }
    const rows = async () => (await store.db.query<{ n: number }>('SELECT count(*)::int AS n FROM memories')).rows[0]!.n

    const everyRoute: InjectOptions[] = [
      { method: 'POST', url: '/v1/memories', payload: { content: 'x', namespace: 'team-a/x' } },
      { method: 'POST', url: '/v1/memories/batch', payload: { items: [{ content: 'x', namespace: 'team-a/x' }] } },
      { method: 'POST', url: '/v1/turns', payload: { user_input: 'q', assistant_response: 'a', namespace: 'team-a/x' } },
      { method: 'POST', url: '/v1/recall', payload: { query: 'x', namespace: 'team-a/x' } },
      { method: 'GET', url: '/v1/memories?namespace=team-a/x' },
      { method: 'GET', url: '/v1/sessions?namespace=team-a/x' },
      { method: 'GET', url: `/v1/memories/${randomUUID()}` },
      { method: 'DELETE', url: `/v1/memories/${randomUUID()}` },
      { method: 'DELETE', url: '/v1/memories?namespace=team-a/x' },
      // Refused before its body is even read: a 401, not a 400.
      { method: 'POST', url: '/v1/memories', payload: { nonsense: true } }
    ]

    test('every /v1 route is 401 without a key, with a wrong key and with another scheme', async () => {
      await save(SECRETS.root, { content: 'kept', namespace: 'team-a/x' })
      for (const route of everyRoute) {
        for (const headers of [{}, bearer('not-a-key-at-all-0123456789'), bearer(`${SECRETS.alice}x`), { authorization: `Basic ${SECRETS.alice}` }]) {
          const res = await app.inject({ ...route, headers })
          assert.equal(res.statusCode, 401, `${route.method} ${route.url}: ${res.body}`)
          assert.match(String(res.headers['www-authenticate']), /^Bearer realm="sage"/)
          assert.equal(res.json().code, 'SAGE_UNAUTHORIZED')
        }
      }
      assert.equal(await rows(), 1)
      const invalid = await app.inject({ method: 'GET', url: '/v1/memories', headers: bearer('wrong-key-0123456789abcdef') })
      assert.equal(invalid.headers['www-authenticate'], 'Bearer realm="sage", error="invalid_token"')
    })

    test('health, docs and metrics need no API key', async () => {
      for (const url of ['/health', '/docs/json', '/metrics']) assert.equal((await app.inject({ method: 'GET', url })).statusCode, 200, url)
    })

    test('a key writes and reads inside its scope, and nowhere else', async () => {
      const id = await save(SECRETS.alice, { content: 'inside', namespace: 'team-a/x' })
      assert.equal((await as(SECRETS.alice, { method: 'GET', url: `/v1/memories/${id}` })).statusCode, 200)
      assert.equal((await as(SECRETS.alice, { method: 'GET', url: '/v1/memories?namespace=team-a/x' })).json().items.length, 1)
      for (const namespace of ['team-b/x', 'team-a', 'team-ab/x']) {
        const res = await as(SECRETS.alice, { method: 'POST', url: '/v1/memories', payload: { content: 'outside', namespace } })
        assert.equal(res.statusCode, 403, namespace)
        assert.deepEqual(res.json(), { statusCode: 403, error: 'Forbidden', code: 'SAGE_FORBIDDEN', message: `namespace "${namespace}" is outside this key's scope` })
      }
      assert.equal(await rows(), 1)
    })

    test('a call without a namespace uses "default", which a scoped key may not use', async () => {
      for (const route of [
        { method: 'POST' as const, url: '/v1/memories', payload: { content: 'x' } },
        { method: 'POST' as const, url: '/v1/recall', payload: { query: 'x' } },
        { method: 'GET' as const, url: '/v1/memories' },
        { method: 'GET' as const, url: '/v1/sessions' },
        { method: 'POST' as const, url: '/v1/turns', payload: { user_input: 'q', assistant_response: 'a' } }
      ]) {
        const res = await as(SECRETS.alice, route)
        assert.equal(res.statusCode, 403, route.url)
        assert.match(res.json().message, /namespace "default"/)
      }
      assert.equal((await as(SECRETS.root, { method: 'POST', url: '/v1/memories', payload: { content: 'x' } })).statusCode, 201)
    })

    test('a batch with one item outside the scope is a 403 and writes nothing', async () => {
      const res = await as(SECRETS.alice, {
        method: 'POST',
        url: '/v1/memories/batch',
        payload: { items: [{ content: 'a', namespace: 'team-a/x' }, { content: 'b', namespace: 'team-a/y' }, { content: 'c', namespace: 'team-b/x' }] }
      })
      assert.equal(res.statusCode, 403)
      assert.match(res.json().message, /team-b\/x/)
      const defaulted = await as(SECRETS.alice, { method: 'POST', url: '/v1/memories/batch', payload: { items: [{ content: 'a', namespace: 'team-a/x' }, { content: 'b' }] } })
      assert.equal(defaulted.statusCode, 403)
      assert.equal(await rows(), 0)
    })

    test('a 403 for a namespace is the same whether or not it holds memories', async () => {
      const probes: InjectOptions[] = [
        { method: 'POST', url: '/v1/recall', payload: { query: 'secret plans', namespace: 'team-b/x' } },
        { method: 'GET', url: '/v1/memories?namespace=team-b/x' },
        { method: 'GET', url: '/v1/sessions?namespace=team-b/x' },
        { method: 'DELETE', url: '/v1/memories?namespace=team-b/x' },
        { method: 'POST', url: '/v1/memories', payload: { content: 'x', namespace: 'team-b/x' } }
      ]
      const answers = async () => Promise.all(probes.map(async (p) => {
        const res = await as(SECRETS.aliceAdmin, p)
        return { status: res.statusCode, body: res.body }
      }))
      const before = await answers()
      await save(SECRETS.bob, { content: 'secret plans', namespace: 'team-b/x', session_id: 's1' })
      const afterSave = await answers()
      assert.deepEqual(afterSave, before)
      for (const answer of before) assert.equal(answer.status, 403)
      assert.equal(await rows(), 1)
    })

    test('another namespace\'s memory by id is a 404 exactly like a missing id, and is not deleted', async () => {
      const id = await save(SECRETS.bob, { content: 'bob only', namespace: 'team-b/x' })
      for (const method of ['GET', 'DELETE'] as const) {
        const theirs = await as(SECRETS.aliceAdmin, { method, url: `/v1/memories/${id}` })
        const missing = await as(SECRETS.aliceAdmin, { method, url: `/v1/memories/${randomUUID()}` })
        assert.equal(theirs.statusCode, 404)
        assert.equal(theirs.body, missing.body)
      }
      assert.equal((await as(SECRETS.bob, { method: 'GET', url: `/v1/memories/${id}` })).statusCode, 200)
      const audit = await store.db.query('SELECT * FROM delete_audit')
      assert.equal(audit.rows.length, 0)
    })

    test('deleting needs the delete permission, whatever the id or namespace', async () => {
      const id = await save(SECRETS.alice, { content: 'mine', namespace: 'team-a/x' })
      for (const url of [`/v1/memories/${id}`, `/v1/memories/${randomUUID()}`, '/v1/memories?namespace=team-a/x', '/v1/memories?namespace=team-b/x']) {
        const res = await as(SECRETS.alice, { method: 'DELETE', url })
        assert.equal(res.statusCode, 403, url)
        assert.match(res.json().message, /may not delete/)
      }
      assert.equal(await rows(), 1)
    })

    test('each delete is audited with the key, its scope, the namespace and the count', async () => {
      const one = await save(SECRETS.aliceAdmin, { content: 'one', namespace: 'team-a/x' })
      await save(SECRETS.aliceAdmin, { content: 'two', namespace: 'team-a/x', session_id: 's1' })
      await save(SECRETS.aliceAdmin, { content: 'three', namespace: 'team-a/x', session_id: 's1' })
      await save(SECRETS.aliceAdmin, { content: 'four', namespace: 'team-a/y' })
      assert.equal((await as(SECRETS.aliceAdmin, { method: 'DELETE', url: `/v1/memories/${one}` })).statusCode, 204)
      assert.deepEqual((await as(SECRETS.aliceAdmin, { method: 'DELETE', url: '/v1/memories?namespace=team-a/x&session_id=s1' })).json(), { deleted: 2 })
      assert.deepEqual((await as(SECRETS.root, { method: 'DELETE', url: '/v1/memories?namespace=team-a/y' })).json(), { deleted: 1 })
      assert.deepEqual((await as(SECRETS.root, { method: 'DELETE', url: '/v1/memories?namespace=nothing-here' })).json(), { deleted: 0 })
      const { rows: audit } = await store.db.query<Record<string, unknown>>(
        'SELECT key_name, key_scopes, namespace, memory_id, session_id, deleted_count, deleted_at FROM delete_audit ORDER BY id'
      )
      assert.deepEqual(audit.map(({ deleted_at: _, ...row }) => row), [
        { key_name: 'alice-admin', key_scopes: ['team-a/*'], namespace: 'team-a/x', memory_id: one, session_id: null, deleted_count: 1 },
        { key_name: 'alice-admin', key_scopes: ['team-a/*'], namespace: 'team-a/x', memory_id: null, session_id: 's1', deleted_count: 2 },
        { key_name: 'root', key_scopes: ['*'], namespace: 'team-a/y', memory_id: null, session_id: null, deleted_count: 1 },
        { key_name: 'root', key_scopes: ['*'], namespace: 'nothing-here', memory_id: null, session_id: null, deleted_count: 0 }
      ])
      for (const row of audit) assert.ok(Date.now() - new Date(row.deleted_at as string).getTime() < 60_000)
      assert.equal(await rows(), 0)
    })

    test('a delete whose audit row cannot be written deletes nothing', async () => {
      const id = await save(SECRETS.root, { content: 'survives', namespace: 'team-a/x', session_id: 's' })
      await store.db.query('ALTER TABLE delete_audit RENAME TO delete_audit_away')
      try {
        assert.equal((await as(SECRETS.root, { method: 'DELETE', url: `/v1/memories/${id}` })).statusCode, 500)
        assert.equal((await as(SECRETS.root, { method: 'DELETE', url: '/v1/memories?namespace=team-a/x' })).statusCode, 500)
      } finally {
        await store.db.query('ALTER TABLE delete_audit_away RENAME TO delete_audit')
      }
      assert.equal(await rows(), 1)
    })

    test('the OpenAPI document marks /v1 routes as needing the bearer key', async () => {
      const doc = (await app.inject({ method: 'GET', url: '/docs/json' })).json()
      assert.deepEqual(doc.paths['/v1/recall'].post.security, [{ bearer: [] }])
      assert.ok(doc.paths['/v1/memories/{id}'].get.responses['403'])
      assert.equal(doc.paths['/health'].get.security, undefined)
    })
  })
}

describe('access with no keys (a developer\'s own machine)', () => {
  let store: TestStore
  let app: FastifyInstance
  before(async () => {
    store = await backends()[0]!.create()
    app = await buildTestApp(store.db)
  })
  after(async () => {
    await app?.close()
    await store?.drop()
  })

  test('everything is allowed, a stray key is ignored, and deletes are audited without a key name', async () => {
    const saved = await app.inject({ method: 'POST', url: '/v1/memories', payload: { content: 'x' }, headers: bearer('whatever-0123456789abcdef') })
    assert.equal(saved.statusCode, 201)
    assert.equal((await app.inject({ method: 'DELETE', url: `/v1/memories/${saved.json().id}` })).statusCode, 204)
    const { rows } = await store.db.query('SELECT key_name, key_scopes, namespace, deleted_count FROM delete_audit')
    assert.deepEqual(rows, [{ key_name: null, key_scopes: ['*'], namespace: 'default', deleted_count: 1 }])
    assert.equal(app.apiKeys.enabled, false)
  })
})

describe('SAGE_API_KEYS_FILE', () => {
  let dir: string
  let store: TestStore
  let app: FastifyInstance | undefined
  const logs: string[] = []
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sage-keys-'))
    store = await backends()[0]!.create()
  })
  after(async () => {
    await app?.close()
    await store?.drop()
    await rm(dir, { recursive: true, force: true })
  })

  const status = async (secret: string) =>
    (await app!.inject({ method: 'GET', url: '/v1/memories?namespace=team-a/x', headers: bearer(secret) })).statusCode

  test('is re-read on reload; an invalid file is logged and the last good keys stay in force', async () => {
    const file = join(dir, 'keys')
    await writeFile(file, `alice:${SECRETS.alice}=team-a/*\n`, { mode: 0o600 })
    const config = testConfig({ SAGE_API_KEYS_FILE: file, LOG_LEVEL: 'info' })
    const stream = new Writable({ write: (chunk, _enc, done) => { logs.push(chunk.toString()); done() } })
    app = await buildApp(config, { database: store.db, backfill: false, logger: { ...(loggerOptions(config) as object), stream } })
    await app.ready()
    assert.equal(await status(SECRETS.alice), 200)
    assert.equal(await status(SECRETS.bob), 401)

    await writeFile(file, `# rotated\nbob:${SECRETS.bob}=team-a/*\n`)
    await app.apiKeys.reload()
    for (let i = 0; i < 100 && (await status(SECRETS.bob)) !== 200; i++) await new Promise((resolve) => setTimeout(resolve, 10))
    assert.equal(await status(SECRETS.bob), 200)
    assert.equal(await status(SECRETS.alice), 401)

    await writeFile(file, `bob:${SECRETS.bob}=team-a/*\ncarol:${SECRETS.root}=bad scope\n`)
    const outcome = await app.apiKeys.reload()
    assert.equal(outcome.ok, false)
    assert.match(outcome.error ?? '', /line 2: key "carol" has scope "bad scope"/)
    assert.equal(await status(SECRETS.bob), 200)
    assert.equal(await status(SECRETS.root), 401)
    assert.deepEqual(app.apiKeys.names(), ['bob'])

    await rm(file)
    assert.equal((await app.apiKeys.reload()).ok, false)
    assert.equal(await status(SECRETS.bob), 200)

    await writeFile(file, '# every key revoked\n')
    assert.deepEqual(await app.apiKeys.reload(), { ok: true, keys: 0 })
    assert.equal(await status(SECRETS.bob), 401)

    const text = logs.join('')
    assert.match(text, /API keys not reloaded; the previous keys stay in force/)
    assert.match(text, /"kept":\["bob"\]/)
    for (const secret of Object.values(SECRETS)) assert.ok(!text.includes(secret), `a secret reached the logs: ${secret}`)
  })

  test('an invalid file at start refuses to build the app, naming the line and not the secret', async () => {
    const file = join(dir, 'bad-keys')
    await writeFile(file, `alice:${SECRETS.alice}=team-a/*\nbob:${SECRETS.bob}\n`)
    await assert.rejects(buildTestApp(store.db, { SAGE_API_KEYS_FILE: file }), (error: Error) => {
      assert.match(error.message, /bad-keys line 2: expected name:secret=scope/)
      assert.ok(!error.message.includes(SECRETS.bob))
      return true
    })
  })
})

describe('keys never reach the logs', () => {
  test('not at trace level, not in a rejected request, not when something logs the headers', async () => {
    const store = await backends()[0]!.create()
    const lines: string[] = []
    const config = testConfig({ SAGE_API_KEYS: KEYS, LOG_LEVEL: 'trace' })
    const stream = new Writable({ write: (chunk, _enc, done) => { lines.push(chunk.toString()); done() } })
    const app = await buildApp(config, { database: store.db, backfill: false, logger: { ...(loggerOptions(config) as object), stream } })
    // What a careless plugin might do: log the request's headers.
    app.addHook('onRequest', async (request) => {
      request.log.info({ headers: request.headers }, 'headers')
    })
    await app.ready()
    try {
      await app.inject({ method: 'POST', url: '/v1/memories', headers: bearer(SECRETS.alice), payload: { content: 'x', namespace: 'team-a/x' } })
      await app.inject({ method: 'POST', url: '/v1/memories', headers: bearer(SECRETS.alice), payload: { content: 'x', namespace: 'team-b/x' } })
      await app.inject({ method: 'GET', url: '/v1/memories', headers: bearer(`${SECRETS.bob}-wrong`) })
      // Sage reads no x-api-key header, but a client may send one: it is censored too.
      await app.inject({ method: 'GET', url: '/v1/memories?namespace=team-a/x', headers: { ...bearer(SECRETS.alice), 'x-api-key': SECRETS.root } })
    } finally {
      await app.close()
      await store.drop()
    }
    const text = lines.join('')
    assert.match(text, /"authorization":"\[redacted\]"/)
    assert.match(text, /"x-api-key":"\[redacted\]"/)
    assert.match(text, /request rejected/)
    for (const secret of Object.values(SECRETS)) assert.ok(!text.includes(secret), `a secret reached the logs: ${secret}`)
  })
})

describe('/metrics access', () => {
  let store: TestStore
  const apps: FastifyInstance[] = []
  before(async () => {
    store = await backends()[0]!.create()
  })
  after(async () => {
    for (const app of apps) await app.close()
    await store?.drop()
  })

  test('METRICS_TOKEN: 401 without it, 200 with it, and API keys do not open it', async () => {
    const app = await buildTestApp(store.db, { METRICS_TOKEN: 'metrics-token-0123456789', SAGE_API_KEYS: KEYS })
    apps.push(app)
    const get = (headers: Record<string, string> = {}) => app.inject({ method: 'GET', url: '/metrics', headers })
    const denied = await get()
    assert.equal(denied.statusCode, 401)
    assert.equal(denied.json().code, 'SAGE_UNAUTHORIZED')
    assert.match(String(denied.headers['www-authenticate']), /^Bearer/)
    assert.equal((await get(bearer(SECRETS.root))).statusCode, 401)
    const allowed = await get(bearer('metrics-token-0123456789'))
    assert.equal(allowed.statusCode, 200)
    assert.match(allowed.body, /sage_redactions_total/)
  })

  test('METRICS_PORT: the main port answers 404 for /metrics', async () => {
    const app = await buildTestApp(store.db, { METRICS_PORT: 9 })
    apps.push(app)
    const res = await app.inject({ method: 'GET', url: '/metrics' })
    assert.equal(res.statusCode, 404)
    assert.equal(res.json().code, 'SAGE_NOT_FOUND')
  })
})

describe('SAGE_API_KEYS_FILE in the process', () => {
  test('a real SIGHUP swaps the keys without a restart; a broken file keeps the old ones', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'sage-keys-'))
    const file = join(dir, 'keys')
    await writeFile(file, `alice:${SECRETS.alice}=team-a/*\n`, { mode: 0o600 })
    const store = await processStore()
    const sage = await startSage({ ...store.env, SAGE_API_KEYS_FILE: file, LOG_LEVEL: 'info' })
    const status = async (secret: string) =>
      (await fetch(`${sage.url}/v1/memories?namespace=team-a/x`, { headers: bearer(secret) })).status
    const settle = async (secret: string, expected: number) => {
      for (let i = 0; i < 100 && (await status(secret)) !== expected; i++) await new Promise((resolve) => setTimeout(resolve, 50))
      return status(secret)
    }
    try {
      assert.equal(await status(SECRETS.alice), 200)
      await writeFile(file, `bob:${SECRETS.bob}=team-a/*\n`)
      sage.child.kill('SIGHUP')
      assert.equal(await settle(SECRETS.bob, 200), 200)
      assert.equal(await status(SECRETS.alice), 401)

      await writeFile(file, 'this is not a key file\n')
      sage.child.kill('SIGHUP')
      for (let i = 0; i < 100 && !sage.output().includes('API keys not reloaded'); i++) await new Promise((resolve) => setTimeout(resolve, 50))
      assert.match(sage.output(), /API keys not reloaded; the previous keys stay in force/)
      assert.equal(await status(SECRETS.bob), 200)
    } finally {
      assert.equal(await sage.stop('SIGTERM'), 0, sage.output())
      await store.drop()
      await rm(dir, { recursive: true, force: true })
    }
    for (const secret of Object.values(SECRETS)) assert.ok(!sage.output().includes(secret), 'a secret reached the logs')
  })
})
