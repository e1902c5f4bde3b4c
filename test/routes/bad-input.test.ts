import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { backends, memoryCount, useTestApp } from '../helper.js'

const cursorOf = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url')
const UUID = '0f6c3b1e-7a2d-4c5e-9f10-1234567890ab'
/** Cursors shaped like the service's that no page ever ends on: each once reached Postgres and answered 500. */
const FORGED_CURSORS = {
  'a year-0 time': cursorOf(['0000-01-01T00:00:00.000Z', UUID]),
  'a time of year 10000': cursorOf(['+010000-01-01T00:00:00.000Z', UUID]),
  'a time that is not ISO': cursorOf(['Tue, 01 Jan 2026 00:00:00 GMT', UUID]),
  'an id of 36 dashes': cursorOf(['2026-01-01T00:00:00.000Z', '-'.repeat(36)]),
  'an id of 36 hex digits': cursorOf(['2026-01-01T00:00:00.000Z', 'a'.repeat(36)]),
  'a bigint id past 2^63': cursorOf(['2026-01-01T00:00:00.000Z', '9999999999999999999']),
  'an object': cursorOf({ at: '2026-01-01T00:00:00.000Z', id: UUID }),
  'not base64 JSON': 'nonsense'
}

/** Malformed requests of every kind: each a clear 4xx in the contract's shape, never a 5xx, never a row. */
for (const backend of backends()) {
  describe(`bad input on ${backend.name}`, () => {
    const suite = useTestApp(backend, { BODY_LIMIT_BYTES: 1024 * 1024, BATCH_BODY_LIMIT_BYTES: 2 * 1024 * 1024 })

    const rows = () => memoryCount(suite.store.db)

    const cases: Array<{ name: string; method?: 'POST' | 'GET' | 'DELETE'; url?: string; payload?: string | object; headers?: Record<string, string>; status: number; message?: RegExp }> = [
      { name: 'invalid JSON', payload: '{"content": ', headers: { 'content-type': 'application/json' }, status: 400 },
      { name: 'empty body', payload: '', headers: { 'content-type': 'application/json' }, status: 400 },
      { name: 'a JSON array', payload: '[1,2]', headers: { 'content-type': 'application/json' }, status: 400 },
      { name: 'text/plain', payload: 'hello', headers: { 'content-type': 'text/plain' }, status: 415 },
      { name: 'content missing', payload: { role: 'user' }, status: 400, message: /content is required/ },
      { name: 'content a number', payload: { content: 42 }, status: 400, message: /content must be a string/ },
      { name: 'content empty', payload: { content: '' }, status: 400, message: /content must be a non-empty string/ },
      { name: 'content only NULs', payload: { content: '\u0000\u0000' }, status: 400, message: /content/ },
      { name: 'content too long', payload: { content: 'x'.repeat(100_001) }, status: 400, message: /100000/ },
      { name: 'unknown field', payload: { content: 'x', namepsace: 'typo' }, status: 400, message: /unknown field "namepsace"/ },
      { name: 'bad namespace', payload: { content: 'x', namespace: 'has space' }, status: 400, message: /namespace/ },
      { name: 'long namespace', payload: { content: 'x', namespace: 'n'.repeat(129) }, status: 400 },
      { name: 'bad role', payload: { content: 'x', role: 'boss' }, status: 400, message: /role must be one of/ },
      { name: 'metadata an array', payload: { content: 'x', metadata: [1] }, status: 400, message: /metadata must be an object/ },
      { name: 'metadata too large', payload: { content: 'x', metadata: { blob: 'y'.repeat(17_000) } }, status: 400, message: /metadata must be at most 16384 bytes/ },
      { name: 'metadata too deep', payload: { content: 'x', metadata: JSON.parse('{"a":'.repeat(12) + '1' + '}'.repeat(12)) }, status: 400, message: /deeper/ },
      { name: 'proto pollution', payload: '{"content":"x","metadata":{"__proto__":{"admin":true}}}', headers: { 'content-type': 'application/json' }, status: 400 },
      { name: 'constructor pollution', payload: '{"content":"x","metadata":{"constructor":{"prototype":{"admin":true}}}}', headers: { 'content-type': 'application/json' }, status: 400 },
      { name: 'too many tags', payload: { content: 'x', tags: Array.from({ length: 33 }, (_, i) => `t${i}`) }, status: 400, message: /tags/ },
      { name: 'long tag', payload: { content: 'x', tags: ['t'.repeat(65)] }, status: 400 },
      { name: 'bad created_at', payload: { content: 'x', created_at: 'yesterday' }, status: 400 },
      { name: 'bad idempotency key', payload: { content: 'x' }, headers: { 'idempotency-key': 'has space' }, status: 400 },
      { name: 'empty batch', url: '/v1/memories/batch', payload: { items: [] }, status: 400 },
      { name: 'batch too large', url: '/v1/memories/batch', payload: { items: Array.from({ length: 1001 }, () => ({ content: 'x' })) }, status: 400 },
      { name: 'body over the limit', payload: { content: 'x'.repeat(2 * 1024 * 1024) }, status: 413 },
      { name: 'batch body over its limit', url: '/v1/memories/batch', payload: { items: [{ content: 'x'.repeat(3 * 1024 * 1024) }] }, status: 413 },
      { name: 'bad id', method: 'GET', url: '/v1/memories/not-a-uuid', status: 400 },
      { name: 'limit too large', method: 'GET', url: '/v1/memories?limit=501', status: 400 },
      { name: 'limit not a number', method: 'GET', url: '/v1/memories?limit=ten', status: 400 },
      { name: 'unknown route', method: 'GET', url: '/v2/nothing', status: 404 },
      ...Object.entries(FORGED_CURSORS).flatMap(([what, cursor]) =>
        ['/v1/memories?namespace=c', '/v1/injections?namespace=c'].map((route) => ({
          name: `${route.split('?')[0]} with a cursor of ${what}`,
          method: 'GET' as const,
          url: `${route}&cursor=${cursor}`,
          status: 400,
          message: /cursor is not one this service gave out/
        }))
      )
    ]

    for (const c of cases) {
      test(`${c.name} -> ${c.status}`, async () => {
        const res = await suite.app.inject({
          method: c.method ?? 'POST',
          url: c.url ?? '/v1/memories',
          headers: c.headers,
          payload: typeof c.payload === 'string' ? c.payload : c.payload === undefined ? undefined : JSON.stringify(c.payload),
          ...(typeof c.payload === 'object' && !c.headers?.['content-type'] ? { headers: { ...c.headers, 'content-type': 'application/json' } } : {})
        })
        assert.equal(res.statusCode, c.status, res.body)
        const body = res.json()
        assert.equal(body.statusCode, c.status)
        assert.equal(typeof body.error, 'string')
        assert.match(body.code, /^SAGE_/)
        assert.equal(typeof body.message, 'string')
        if (c.message) assert.match(body.message, c.message)
        assert.equal(await rows(), 0)
      })
    }

    test('NUL characters inside content, metadata and tags are removed, never a 5xx', async () => {
      const res = await suite.app.inject({
        method: 'POST',
        url: '/v1/memories',
        payload: { content: 'a\u0000b', metadata: { 'k\u0000': 'v\u0000', nested: ['\u0000x'] }, tags: ['t\u0000'], source_id: 's\u0000' }
      })
      assert.equal(res.statusCode, 201, res.body)
      const memory = (await suite.app.inject({ method: 'GET', url: `/v1/memories/${res.json().id}` })).json()
      assert.equal(memory.content, 'ab')
      assert.deepEqual(memory.metadata, { k: 'v', nested: ['x'] })
      assert.deepEqual(memory.tags, ['t'])
      assert.equal(memory.source_id, 's')
      await suite.store.reset()
    })

    test('lone surrogates and SQL/LIKE metacharacters are stored as text', async () => {
      const content = "'; DROP TABLE memories; -- 100% _match_ \\ \ud800 end"
      const res = await suite.app.inject({ method: 'POST', url: '/v1/memories', payload: { content, namespace: 'a_b.c' } })
      assert.equal(res.statusCode, 201, res.body)
      const memory = (await suite.app.inject({ method: 'GET', url: `/v1/memories/${res.json().id}` })).json()
      assert.equal(memory.content, "'; DROP TABLE memories; -- 100% _match_ \\ \ufffd end")
      const recall = await suite.app.inject({ method: 'POST', url: '/v1/recall', payload: { query: "'; DROP -- 100% _ \\ | & ! :* <->", namespace: 'a_b.c' } })
      assert.equal(recall.statusCode, 200, recall.body)
      await suite.store.reset()
    })
  })
}
