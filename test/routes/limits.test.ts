import assert from 'node:assert/strict'
import { beforeEach, describe, test } from 'node:test'
import type { InjectOptions } from 'fastify'
import { LIMITS } from '../../src/memory/memory-schemas.js'
import { backends, memoryCount, useTestApp } from '../helper.js'

/** A JSON object nested `levels` deep: {"a":{"a":…1}}. */
const nested = (levels: number): unknown => (levels === 0 ? 1 : { a: nested(levels - 1) })

/** Metadata whose JSON is exactly `bytes` long. */
const metadataOf = (bytes: number) => ({ blob: 'y'.repeat(bytes - '{"blob":""}'.length) })

interface Limit {
  name: string
  /** The largest request within the limit (answered 2xx). */
  within: InjectOptions
  /** The smallest past it (answered `status` with a message matching `message`). */
  past: InjectOptions
  status: 400 | 413
  message: RegExp
}

const save = (payload: object): InjectOptions => ({ method: 'POST', url: '/v1/memories', payload })
const recall = (payload: object): InjectOptions => ({ method: 'POST', url: '/v1/recall', payload: { query: 'x', ...payload } })
const batchOf = (count: number, item: object = { content: 'x' }): InjectOptions => ({
  method: 'POST',
  url: '/v1/memories/batch',
  payload: { items: Array.from({ length: count }, (_, i) => ({ ...item, source_id: `s${i}` })) }
})

/** Every limit of the contract at its default, on both sides of the boundary, each refusal naming the limit. */
const limits: Limit[] = [
  { name: 'body (BODY_LIMIT_BYTES, 1 MiB)', within: save({ content: 'x', metadata: { pad: [] } }), past: save({ content: 'x', metadata: { pad: 'p'.repeat(1024 * 1024) } }), status: 413, message: /limit of 1048576 bytes \(BODY_LIMIT_BYTES\)/ },
  { name: 'batch body (BATCH_BODY_LIMIT_BYTES, 10 MiB)', within: batchOf(30, { content: 'b'.repeat(LIMITS.contentChars) }), past: batchOf(110, { content: 'b'.repeat(LIMITS.contentChars) }), status: 413, message: /limit of 10485760 bytes \(BATCH_BODY_LIMIT_BYTES\)/ },
  { name: 'content characters', within: save({ content: 'c'.repeat(LIMITS.contentChars) }), past: save({ content: 'c'.repeat(LIMITS.contentChars + 1) }), status: 400, message: /content must be at most 100000 characters/ },
  // Characters, not UTF-16 units: 100,000 emoji are 200,000 units and still within.
  { name: 'content characters outside the BMP', within: save({ content: '😀'.repeat(LIMITS.contentChars) }), past: save({ content: '😀'.repeat(LIMITS.contentChars + 1) }), status: 400, message: /content must be at most 100000 characters/ },
  { name: 'metadata bytes', within: save({ content: 'x', metadata: metadataOf(LIMITS.metadataBytes) }), past: save({ content: 'x', metadata: metadataOf(LIMITS.metadataBytes + 1) }), status: 400, message: /metadata must be at most 16384 bytes serialized/ },
  { name: 'metadata depth', within: save({ content: 'x', metadata: nested(LIMITS.metadataDepth) }), past: save({ content: 'x', metadata: nested(LIMITS.metadataDepth + 1) }), status: 400, message: /nests deeper than 8 levels/ },
  { name: 'tag count', within: save({ content: 'x', tags: Array.from({ length: LIMITS.tags }, (_, i) => `t${i}`) }), past: save({ content: 'x', tags: Array.from({ length: LIMITS.tags + 1 }, (_, i) => `t${i}`) }), status: 400, message: /tags must have at most 32 items/ },
  { name: 'tag characters', within: save({ content: 'x', tags: ['t'.repeat(LIMITS.tagChars)] }), past: save({ content: 'x', tags: ['t'.repeat(LIMITS.tagChars + 1)] }), status: 400, message: /tags\[0\] must be at most 64 characters/ },
  { name: 'namespace characters', within: save({ content: 'x', namespace: 'n'.repeat(128) }), past: save({ content: 'x', namespace: 'n'.repeat(129) }), status: 400, message: /namespace must be at most 128 characters/ },
  { name: 'session_id characters', within: save({ content: 'x', session_id: 's'.repeat(256) }), past: save({ content: 'x', session_id: 's'.repeat(257) }), status: 400, message: /session_id must be at most 256 characters/ },
  { name: 'source_id characters', within: save({ content: 'x', source_id: 's'.repeat(256) }), past: save({ content: 'x', source_id: 's'.repeat(257) }), status: 400, message: /source_id must be at most 256 characters/ },
  { name: 'Idempotency-Key characters', within: { ...save({ content: 'x' }), headers: { 'idempotency-key': 'k'.repeat(255) } }, past: { ...save({ content: 'x' }), headers: { 'idempotency-key': 'k'.repeat(256) } }, status: 400, message: /idempotency-key must be at most 255 characters/ },
  { name: 'batch items', within: batchOf(LIMITS.batchItems), past: batchOf(LIMITS.batchItems + 1), status: 400, message: /items must have at most 1000 items/ },
  { name: 'k', within: recall({ k: LIMITS.k }), past: recall({ k: LIMITS.k + 1 }), status: 400, message: /k must be <= 50/ },
  { name: 'k below 1', within: recall({ k: 1 }), past: recall({ k: 0 }), status: 400, message: /k must be >= 1/ },
  { name: 'a huge k', within: recall({ k: 8 }), past: recall({ k: 1e308 }), status: 400, message: /k must be <= 50/ },
  { name: 'query characters', within: recall({ query: 'q'.repeat(LIMITS.queryChars) }), past: recall({ query: 'q'.repeat(LIMITS.queryChars + 1) }), status: 400, message: /query must be at most 8000 characters/ },
  { name: 'token_budget', within: recall({ format: 'context', token_budget: LIMITS.tokenBudget }), past: recall({ token_budget: LIMITS.tokenBudget + 1 }), status: 400, message: /token_budget must be <= 100000/ },
  // Postgres keeps years 1 to 9999 of a timestamp; JSON date-times allow year 0 and offsets past 9999.
  { name: 'created_at year 0', within: save({ content: 'x', created_at: '0001-01-01T00:00:00Z' }), past: save({ content: 'x', created_at: '0000-12-31T23:59:59Z' }), status: 400, message: /created_at must be a date-time from 0001-01-01 to 9999-12-31/ },
  { name: 'created_at past 9999', within: save({ content: 'x', created_at: '9999-12-31T23:59:59Z' }), past: save({ content: 'x', created_at: '9999-12-31T23:59:59-00:01' }), status: 400, message: /created_at must be a date-time from 0001-01-01 to 9999-12-31/ },
  { name: 'batch item created_at', within: batchOf(2, { content: 'x', created_at: '0001-01-01T00:00:00+00:00' }), past: batchOf(2, { content: 'x', created_at: '0000-06-01T00:00:00Z' }), status: 400, message: /items\[0\]\.created_at must be a date-time from 0001-01-01/ },
  { name: 'filter.since year 0', within: recall({ filter: { since: '0001-01-01T00:00:00Z' } }), past: recall({ filter: { since: '0000-01-01T00:00:00Z' } }), status: 400, message: /filter\.since must be a date-time from 0001-01-01/ },
  { name: 'filter.until past 9999', within: recall({ filter: { until: '9999-12-31T23:59:59Z' } }), past: recall({ filter: { until: '9999-12-31T23:59:59-05:00' } }), status: 400, message: /filter\.until must be a date-time from 0001-01-01/ },
  { name: 'list limit', within: { method: 'GET', url: '/v1/memories?limit=500' }, past: { method: 'GET', url: '/v1/memories?limit=501' }, status: 400, message: /limit must be <= 500/ },
  { name: 'sessions limit', within: { method: 'GET', url: '/v1/sessions?limit=1000' }, past: { method: 'GET', url: '/v1/sessions?limit=1001' }, status: 400, message: /limit must be <= 1000/ }
]

for (const backend of backends()) {
  describe(`limits on ${backend.name}`, () => {
    const suite = useTestApp(backend)
    beforeEach(() => suite.store.reset())

    const rows = () => memoryCount(suite.store.db)

    for (const limit of limits) {
      test(`${limit.name}: at the limit 2xx, past it ${limit.status} naming it, and nothing written`, async () => {
        const within = await suite.app.inject(limit.within)
        assert.ok(within.statusCode >= 200 && within.statusCode < 300, `${within.statusCode} ${within.body.slice(0, 300)}`)
        await suite.store.reset()
        const past = await suite.app.inject(limit.past)
        assert.equal(past.statusCode, limit.status, past.body.slice(0, 300))
        const body = past.json()
        assert.equal(body.statusCode, limit.status)
        assert.equal(body.code, limit.status === 413 ? 'SAGE_PAYLOAD_TOO_LARGE' : 'SAGE_VALIDATION')
        assert.match(body.message, limit.message)
        assert.equal(await rows(), 0)
      })
    }
  })
}
