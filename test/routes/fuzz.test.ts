import assert from 'node:assert/strict'
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { after, before, describe, test } from 'node:test'
import fc from 'fast-check'
import type { FastifyInstance } from 'fastify'
import { ROLES } from '../../src/memory/memory-schemas.js'
import { normalizeMetadata, normalizeTags, normalizeText } from '../../src/memory/normalize.js'
import { scopesAllow } from '../../src/security/api-keys.js'
import { redactSecrets } from '../../src/security/redact-secrets.js'
import { backends, buildTestApp, type TestStore } from '../helper.js'

/**
 * Property-based tests over the whole HTTP surface, against a listening server on a real store: thousands of
 * generated requests, valid and invalid, and after each one
 * - no 5xx and the server still answers;
 * - no 2xx on /v1 or /hooks without a valid key, and no 2xx DELETE by a key without the delete permission;
 * - a rejected request changed no row, and no request changed a row outside its key's namespaces;
 * - every memory a 2xx save created reads back, over HTTP, exactly as the normalisation rules say;
 * - no memory, list, recall or hook answer ever holds anything from a namespace outside the key's scope.
 * FUZZ_RUNS raises the number of requests per store (default below); FUZZ_SEED replays another sequence;
 * FUZZ_DEBUG=1 also reports which validation messages refused most.
 */

const RUNS = Number(process.env.FUZZ_RUNS ?? 1500)
const SEED = Number(process.env.FUZZ_SEED ?? 20261121)

interface Caller {
  name: 'alpha' | 'beta' | 'none' | 'wrong' | 'basic'
  authorization?: string
  scopes: readonly string[]
  canDelete: boolean
}
const ALPHA_KEY = 'fuzz-alpha-key-0123456789abcdef'
const BETA_KEY = 'fuzz-beta-key-0123456789abcdef0'
const CALLERS: Caller[] = [
  { name: 'alpha', authorization: `Bearer ${ALPHA_KEY}`, scopes: ['fz-a/*'], canDelete: true },
  { name: 'beta', authorization: `bearer ${BETA_KEY}`, scopes: ['fz-b/*'], canDelete: false },
  { name: 'none', scopes: [], canDelete: false },
  { name: 'wrong', authorization: `Bearer ${ALPHA_KEY.slice(0, -1)}x`, scopes: [], canDelete: false },
  { name: 'basic', authorization: `Basic ${Buffer.from(`alpha:${ALPHA_KEY}`).toString('base64')}`, scopes: [], canDelete: false }
]
/** Words only each namespace's seeded memories hold; generated text never contains them except in recall queries. */
const MARK = { alpha: 'qqalphamarkqq', beta: 'qqbetamarkqq' }

// Built at run time so this file holds no credential-shaped literal.
const GITHUB_TOKEN = ['ghp', '_', 'Z9y8X7w6'.repeat(4), 'V5u4'].join('')

/** A JSON number literal that JSON.stringify cannot write (1e999 parses to Infinity). */
class RawNumber {
  constructor(readonly literal: string) {}
}
/** An object as a list of entries, so keys such as __proto__ and duplicate keys reach the wire. */
class Entries {
  constructor(readonly entries: Array<[string, unknown]>) {}
}

function toJson(value: unknown): string {
  if (value instanceof RawNumber) return value.literal
  if (value instanceof Entries) return `{${value.entries.map(([k, v]) => `${JSON.stringify(k)}:${toJson(v)}`).join(',')}}`
  if (Array.isArray(value)) return `[${value.map((item) => (item === undefined ? 'null' : toJson(item))).join(',')}]`
  if (value !== null && typeof value === 'object') {
    return `{${Object.entries(value).filter(([, v]) => v !== undefined).map(([k, v]) => `${JSON.stringify(k)}:${toJson(v)}`).join(',')}}`
  }
  return JSON.stringify(value) ?? 'null'
}

// ---- Generators -------------------------------------------------------------------------------------------

const specialPiece = fc.constantFrom(
  '\u0000', '\u0001', '\u007f', '\ud800', '\udfff', '\ud83d', '😀', 'é', 'e\u0301', '\u202e', '\ufeff', '\u2028', '\u00a0', '　', '漢字', '한국어',
  "'", '"', '\\', '%', '_', '%_\\', "'; DROP TABLE memories; --", '$1', ':*', '<->', '!', '&', '|', '(', ')', "''", '\\x00',
  '\t', '\n', '\r\n', ' ', '<private>', '</private>', '<private>hidden</private>', '__proto__', 'constructor', 'prototype',
  'null', 'NaN', '-1', '1e999', `token ${GITHUB_TOKEN}`, 'password=hunter2hunter2', 'fz-a/x', 'fz-b/x', '*'
)
const codeUnit = fc.integer({ min: 0, max: 0xffff }).map((unit) => String.fromCharCode(unit))
const nasty = fc
  .array(fc.oneof(specialPiece, fc.string({ maxLength: 10 }), fc.string({ unit: codeUnit, maxLength: 5 }), fc.string({ unit: 'binary', maxLength: 5 })), { maxLength: 6 })
  .map((pieces) => pieces.join(''))
const longText = fc.constantFrom('x'.repeat(100_000), 'y'.repeat(100_001), '😀'.repeat(50_001), 'z '.repeat(60_000))
const text = fc.oneof({ weight: 30, arbitrary: nasty.filter((t) => normalizeText(t).length > 0) }, { weight: 2, arbitrary: nasty }, { weight: 1, arbitrary: longText })
const hugeNumber = fc.constantFrom(new RawNumber('1e999'), new RawNumber('-1e999'), new RawNumber('1e308'), new RawNumber('123456789012345678901234567890'), new RawNumber('-0'), new RawNumber('1.5e-400'))
const anyJson = fc.oneof(fc.jsonValue({ maxDepth: 2 }), hugeNumber, fc.double(), fc.integer())
/** Mostly valid, so that many requests get past validation; each field is wrong in a few percent of them. */
const mostly = <T, U>(valid: fc.Arbitrary<T>, invalid: fc.Arbitrary<U>, weight = 25) => fc.oneof({ weight, arbitrary: valid }, { weight: 1, arbitrary: invalid })
const namespace = fc.oneof(
  { weight: 24, arbitrary: fc.constantFrom('fz-a/x', 'fz-a/y', 'fz-b/x', 'fz-b/y', 'fz-a/x._:@-', 'fz-b/9') },
  { weight: 2, arbitrary: fc.constantFrom('default', 'fz-a', 'fz-ab/x', 'FZ-A/x', 'fz-a/x ', 'fz-a/%', 'fz-a/_', "fz-a/o'brien", 'n'.repeat(129)) },
  { weight: 1, arbitrary: nasty },
  { weight: 1, arbitrary: anyJson }
)
const metadataKey = fc.oneof(fc.constantFrom('__proto__', 'constructor', 'prototype', 'cwd', 'k\u0000', 'k', '', 'tool'), nasty)
const deep = (levels: number): unknown => (levels === 0 ? 'leaf' : new Entries([['d', deep(levels - 1)]]))
const safeKey = fc.oneof(fc.constantFrom('cwd', 'k\u0000', 'k', '', 'tool', 'ünï', '😀', '\ud800'), nasty)
const metadata = fc.oneof(
  { weight: 30, arbitrary: fc.array(fc.tuple(safeKey, fc.oneof(nasty, fc.jsonValue({ maxDepth: 2 }), hugeNumber, fc.array(nasty, { maxLength: 3 }))), { maxLength: 6 }).map((entries) => new Entries(entries)) },
  { weight: 2, arbitrary: fc.array(fc.tuple(metadataKey, fc.oneof(nasty, anyJson)), { minLength: 1, maxLength: 4 }).map((entries) => new Entries(entries)) },
  { weight: 1, arbitrary: fc.integer({ min: 6, max: 11 }).map(deep) },
  { weight: 1, arbitrary: fc.constant({ blob: 'm'.repeat(16_400) }) },
  { weight: 1, arbitrary: anyJson }
)
const tag = fc.oneof(fc.string({ minLength: 1, maxLength: 12 }), fc.constantFrom('ops', 'a\u0000b', ' x ', '%', '_', '\ud83d'))
const tags = fc.oneof({ weight: 30, arbitrary: fc.array(tag, { maxLength: 4 }) }, { weight: 1, arbitrary: fc.array(nasty, { maxLength: 4 }) }, { weight: 1, arbitrary: fc.array(fc.constant('t'), { minLength: 33, maxLength: 34 }) }, { weight: 1, arbitrary: anyJson })
const validTimestamp = fc.date({ min: new Date('0001-01-01T00:00:00Z'), max: new Date('9999-12-31T23:59:59Z'), noInvalidDate: true }).map((d) => d.toISOString())
const timestamp = mostly(validTimestamp, fc.oneof(nasty, fc.constantFrom('0000-01-01T00:00:00Z', '9999-12-31T23:59:59-05:00', '2026-02-30T00:00:00Z', '2026-01-01', '+010000-01-01T00:00:00Z')), 10)
const sessionId = mostly(fc.oneof(fc.constantFrom('s1', 's2', 's3', null), fc.string({ minLength: 1, maxLength: 20 })), fc.oneof(nasty, anyJson), 15)
const sourceId = mostly(fc.oneof(fc.constantFrom('src-1', 'src-2', null), fc.string({ minLength: 1, maxLength: 20 }), nasty), fc.constant('s'.repeat(257)))

const memoryInput = fc.record(
  {
    namespace,
    session_id: sessionId,
    role: mostly(fc.constantFrom(...ROLES), nasty),
    content: mostly(text, anyJson),
    metadata,
    tags,
    source_id: sourceId,
    created_at: timestamp,
    namepsace: nasty
  },
  { requiredKeys: ['content'] }
).map(({ namepsace, ...input }) => (namepsace !== undefined && namepsace.length % 29 === 1 ? { ...input, namepsace } : input))

const recallBody = fc.record(
  {
    query: fc.oneof({ weight: 12, arbitrary: text }, { weight: 6, arbitrary: fc.constantFrom(MARK.alpha, MARK.beta, `${MARK.alpha} ${MARK.beta}`, `seeded ${MARK.beta}`) }, { weight: 1, arbitrary: anyJson }),
    namespace,
    session_id: sessionId,
    k: mostly(fc.integer({ min: 1, max: 50 }), fc.oneof(fc.integer({ min: -2, max: 60 }), hugeNumber, fc.constantFrom(1.5, '8'), anyJson)),
    mode: mostly(fc.constantFrom('hybrid', 'vector', 'text'), nasty),
    filter: fc.record({ role: fc.array(mostly(fc.constantFrom(...ROLES), nasty), { maxLength: 3 }), tags, metadata, since: timestamp, until: timestamp, exclude_session_id: sessionId }, { requiredKeys: [] })
      .map((filter) => (filter.since && filter.until ? { ...filter, until: undefined } : filter)),
    min_score: mostly(fc.double({ min: 0, max: 0.5, noNaN: true }), fc.oneof(fc.double({ min: -1, max: 2, noNaN: true }), hugeNumber)),
    format: mostly(fc.constantFrom('json', 'context'), fc.constant('xml')),
    token_budget: mostly(fc.integer({ min: 1, max: 100_000 }), fc.oneof(fc.integer({ min: -1, max: 200_000 }), hugeNumber))
  },
  { requiredKeys: ['query'] }
)

const turnBody = fc.record(
  { user_input: text, assistant_response: mostly(text, anyJson), namespace, session_id: sessionId, metadata, tags },
  { requiredKeys: ['user_input', 'assistant_response'] }
)

const hookBody = fc.record(
  {
    session_id: fc.oneof(fc.constantFrom('hook-1', 'hook-2'), nasty),
    transcript_path: fc.oneof(fc.constant('/nonexistent/t.jsonl'), nasty),
    cwd: fc.oneof({ weight: 6, arbitrary: fc.constantFrom('/fz/a', '/fz/a/sub', '/fz/b', '/fz/b/deeper', '/elsewhere', '/') }, { weight: 1, arbitrary: nasty }),
    hook_event_name: fc.oneof(fc.constantFrom('UserPromptSubmit', 'Stop', 'SubagentStop', 'SessionStart', 'PostCompact', 'PreCompact', 'SessionEnd'), nasty),
    prompt: fc.oneof(text, anyJson),
    last_assistant_message: text,
    compact_summary: text,
    source: fc.constantFrom('startup', 'resume', 'clear', 'compact')
  },
  { requiredKeys: ['hook_event_name'] }
)

type Encoding = 'json' | 'invalid-utf8' | 'garbage' | 'empty'
interface Shape {
  route: string
  method: string
  path: string
  body?: unknown
  /** Index into the ids saved so far (the id is picked when the request runs). */
  idPick?: number
}

const percentEncode = (value: string) =>
  [...Buffer.from(value, 'utf8')].map((byte) => (/[A-Za-z0-9._~-]/.test(String.fromCharCode(byte)) ? String.fromCharCode(byte) : `%${byte.toString(16).padStart(2, '0')}`)).join('')
const queryValue = fc.oneof(
  { weight: 6, arbitrary: fc.oneof(namespace.filter((v): v is string => typeof v === 'string'), nasty, fc.integer({ min: -5, max: 2000 }).map(String)).map(percentEncode) },
  { weight: 1, arbitrary: fc.constantFrom('%', '%zz', '%E0%A4', '%00', '%ff%fe', '%ED%A0%80', '1e999', 'NaN', '[]', '') }
)
const queryPair = fc.oneof(
  { weight: 12, arbitrary: fc.tuple(fc.constant('namespace'), fc.oneof({ weight: 8, arbitrary: fc.constantFrom('fz-a/x', 'fz-a/y', 'fz-b/x', 'fz-b/y') }, { weight: 1, arbitrary: queryValue })) },
  { weight: 3, arbitrary: fc.tuple(fc.constant('session_id'), fc.oneof(fc.constantFrom('s1', 's2', 's3', 's1%00'), queryValue)) },
  { weight: 2, arbitrary: fc.tuple(fc.constant('role'), fc.oneof(fc.constantFrom(...ROLES), queryValue)) },
  { weight: 2, arbitrary: fc.tuple(fc.constant('limit'), fc.oneof(fc.integer({ min: 1, max: 500 }).map(String), queryValue)) },
  { weight: 1, arbitrary: fc.tuple(fc.constantFrom('cursor', '__proto__', 'constructor', 'x', 'namespace'), queryValue) }
)
const queryString = fc
  .oneof({ weight: 10, arbitrary: fc.uniqueArray(queryPair, { selector: ([key]) => key, maxLength: 3 }) }, { weight: 1, arbitrary: fc.array(queryPair, { maxLength: 3 }) })
  .map((pairs) => (pairs.length === 0 ? '' : `?${pairs.map(([k, v]) => `${k}=${v}`).join('&')}`))

const shape: fc.Arbitrary<Shape> = fc.oneof(
  { weight: 6, arbitrary: mostly(memoryInput, anyJson, 15).map((body) => ({ route: 'save', method: 'POST', path: '/v1/memories', body })) },
  { weight: 3, arbitrary: mostly(fc.array(memoryInput, { maxLength: 5 }).map((items) => ({ items })), anyJson, 15).map((body) => ({ route: 'batch', method: 'POST', path: '/v1/memories/batch', body })) },
  { weight: 2, arbitrary: turnBody.map((body) => ({ route: 'turn', method: 'POST', path: '/v1/turns', body })) },
  { weight: 4, arbitrary: recallBody.map((body) => ({ route: 'recall', method: 'POST', path: '/v1/recall', body })) },
  { weight: 3, arbitrary: queryString.map((q) => ({ route: 'list', method: 'GET', path: `/v1/memories${q}` })) },
  { weight: 2, arbitrary: queryString.map((q) => ({ route: 'sessions', method: 'GET', path: `/v1/sessions${q}` })) },
  { weight: 3, arbitrary: fc.nat().map((idPick) => ({ route: 'get', method: 'GET', path: '/v1/memories/:id', idPick })) },
  { weight: 2, arbitrary: fc.nat().map((idPick) => ({ route: 'delete', method: 'DELETE', path: '/v1/memories/:id', idPick })) },
  { weight: 1, arbitrary: queryString.map((q) => ({ route: 'delete-many', method: 'DELETE', path: `/v1/memories${q}` })) },
  { weight: 4, arbitrary: fc.tuple(hookBody, fc.option(namespace.filter((v): v is string => typeof v === 'string'))).map(([body, ns]) => ({ route: 'hook', method: 'POST', path: `/hooks/claude-code${ns === null ? '' : `?namespace=${percentEncode(ns)}`}`, body })) },
  {
    weight: 1,
    arbitrary: fc.tuple(fc.constantFrom('GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'HEAD', 'OPTIONS'), fc.oneof(fc.constantFrom('/v1', '/v1/', '/v1/memories/batch', '/v1/recall', '/v1/memories/%00', '/v1/memories/..%2F..%2Fetc', '/hooks', '/health', '/metrics', '/docs/json', '//v1/memories', '/v1/memories/00000000-0000-0000-0000-000000000000'), nasty.map((p) => `/${percentEncode(p)}`)), anyJson)
      .map(([method, path, body]) => ({ route: 'other', method, path, body }))
  }
)

const headerValue = fc.string({ unit: fc.integer({ min: 0x20, max: 0x7e }).map((c) => String.fromCharCode(c)), maxLength: 40 })
const headerName = fc.stringMatching(/^[a-z][a-z0-9-]{0,15}$/).filter((name) => !['content-length', 'transfer-encoding', 'host', 'connection', 'expect', 'content-type', 'authorization', 'upgrade', 'te', 'trailer', 'keep-alive'].includes(name))
const request = fc.record({
  shape,
  caller: fc.oneof({ weight: 6, arbitrary: fc.constantFrom(CALLERS[0]!, CALLERS[1]!) }, { weight: 1, arbitrary: fc.constantFrom(...CALLERS.slice(2)) }),
  encoding: fc.oneof({ weight: 20, arbitrary: fc.constant<Encoding>('json') }, { weight: 1, arbitrary: fc.constantFrom<Encoding>('invalid-utf8', 'garbage', 'empty') }),
  garbage: fc.uint8Array({ maxLength: 64 }),
  contentType: fc.oneof(
    { weight: 40, arbitrary: fc.constant('application/json') },
    { weight: 3, arbitrary: fc.constantFrom('application/json; charset=utf-8', 'APPLICATION/JSON', 'application/json; charset=latin1', 'application/vnd.api+json', 'text/plain', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x', '', 'application/json, text/plain') },
    { weight: 1, arbitrary: fc.constant(undefined) }
  ),
  idempotencyKey: fc.option(fc.oneof(fc.constantFrom('idem-1', 'idem-2'), headerValue), { freq: 4 }),
  extraHeaders: fc.dictionary(headerName, headerValue, { maxKeys: 3 }),
  prefer: fc.option(fc.constant('respond-async'), { freq: 8 }),
  /** Point the request's namespaces at the caller's own scope, so more of them get past the scope check. */
  ownNamespaces: fc.boolean()
})
type FuzzRequest = typeof request extends fc.Arbitrary<infer R> ? R : never

// ---- The server and the checks ----------------------------------------------------------------------------

interface Reply {
  status: number
  body: string
}

function send(base: URL, agent: http.Agent, method: string, path: string, headers: Record<string, string>, body: Buffer | undefined): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: base.hostname, port: base.port, method, path, headers, agent, timeout: 20_000 }, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (chunk: Buffer) => chunks.push(chunk))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }))
      res.on('error', reject)
    })
    req.on('timeout', () => req.destroy(new Error(`no answer to ${method} ${path} within 20 s`)))
    req.on('error', reject)
    req.end(body)
  })
}

/** What the service stores for saved text: the normalisation rules, then redaction, then normalisation again. */
function expectedContent(raw: string): string {
  const content = normalizeText(raw)
  const redacted = redactSecrets(content)
  return redacted.redactions.length > 0 ? normalizeText(redacted.text) : content
}

function redactStrings(value: unknown): unknown {
  if (typeof value === 'string') return redactSecrets(value).text
  if (Array.isArray(value)) return value.map(redactStrings)
  if (value === null || typeof value !== 'object') return value
  return Object.fromEntries(Object.entries(value).map(([key, item]) => [key, redactStrings(item)]))
}

/** The memory a valid save input becomes, as GET /v1/memories/:id shows it. */
function expectedMemory(input: Record<string, unknown>, content: string, role?: string) {
  const text = (value: unknown) => (value == null ? null : normalizeText(value as string) || null)
  return {
    namespace: (input.namespace as string | undefined) ?? 'default',
    session_id: text(input.session_id),
    role: role ?? (input.role as string | undefined) ?? 'note',
    content: expectedContent(content),
    metadata: JSON.parse(JSON.stringify(redactStrings(normalizeMetadata(input.metadata as Record<string, unknown> | undefined, 'metadata')))),
    tags: normalizeTags(input.tags as string[] | undefined, 'tags'),
    source_id: text(input.source_id)
  }
}

type Counts = { alpha: number; beta: number; other: number }

for (const backend of backends()) {
  describe(`the HTTP surface under generated requests on ${backend.name}`, () => {
    let store: TestStore
    let app: FastifyInstance
    let base: URL
    // A connection per request: a socket the server closed after a malformed request is never reused.
    const agent = new http.Agent({ keepAlive: false, maxSockets: 1 })
    const ids: string[] = []
    /** "route status" -> how many: the diagnostic shows the run reached every answer, not just 400s. */
    const statuses = new Map<string, number>()
    /** With FUZZ_DEBUG=1: 400 messages -> how many. */
    const reasons = new Map<string, number>()

    before(async () => {
      store = await backend.create()
      app = await buildTestApp(store.db, {
        SAGE_API_KEYS: `alpha:${ALPHA_KEY}=fz-a/*:delete;beta:${BETA_KEY}=fz-b/*`,
        HOOK_NAMESPACE_MAP: '/fz/a=fz-a/hook,/fz/b=fz-b/hook',
        // Hook saves finish inside the request, so a row never lands during a later one.
        HOOK_DEADLINE_MS: 20_000,
        RATE_LIMIT_MAX: 1_000_000
      })
      await app.listen({ host: '127.0.0.1', port: 0 })
      base = new URL(`http://127.0.0.1:${(app.server.address() as AddressInfo).port}`)
    })
    after(async () => {
      agent.destroy()
      await app?.close()
      await store?.drop()
    })

    const counts = async (): Promise<Counts> => {
      const { rows } = await store.db.query<{ alpha: number; beta: number; other: number }>(
        `SELECT count(*) FILTER (WHERE namespace LIKE 'fz-a/%')::int AS alpha, count(*) FILTER (WHERE namespace LIKE 'fz-b/%')::int AS beta,
                count(*) FILTER (WHERE namespace NOT LIKE 'fz-a/%' AND namespace NOT LIKE 'fz-b/%')::int AS other FROM memories`
      )
      return rows[0]!
    }

    const seed = async () => {
      for (const [caller, ns, mark] of [[CALLERS[0]!, 'fz-a/x', MARK.alpha], [CALLERS[1]!, 'fz-b/x', MARK.beta]] as const) {
        for (const session of ['s1', 's2']) {
          const res = await send(base, agent, 'POST', '/v1/memories', { 'content-type': 'application/json', authorization: caller.authorization! }, Buffer.from(JSON.stringify({ namespace: ns, session_id: session, content: `${mark} seeded in ${ns}` })))
          assert.equal(res.status, 201, res.body)
          ids.push(JSON.parse(res.body).id)
        }
      }
    }

    async function check(r: FuzzRequest): Promise<void> {
      const { shape: s, caller } = r
      const own = (text: string) =>
        !r.ownNamespaces ? text : caller.name === 'alpha' ? text.replaceAll('fz-b/', 'fz-a/') : caller.name === 'beta' ? text.replaceAll('fz-a/', 'fz-b/') : text
      const path = s.path.includes(':id')
        ? s.path.replace(':id', ids.length > 0 && s.idPick! % 5 !== 0 ? ids[s.idPick! % ids.length]! : s.idPick! % 2 ? '00000000-0000-4000-8000-000000000000' : percentEncode(String(s.idPick)))
        : own(s.path)
      const json = s.body === undefined ? undefined : own(toJson(s.body))
      const body =
        r.encoding === 'empty' ? Buffer.alloc(0)
          : r.encoding === 'garbage' ? Buffer.from(r.garbage)
            : r.encoding === 'invalid-utf8' ? Buffer.concat([Buffer.from('{"content":"a'), Buffer.from(r.garbage), Buffer.from('b","namespace":"fz-a/x"}')])
              : json === undefined ? undefined : Buffer.from(json, 'utf8')
      // Framed explicitly: Node's client sends a GET, HEAD or DELETE body with neither length nor chunking.
      const headers: Record<string, string> = { ...r.extraHeaders, ...(body && { 'content-length': String(body.length) }) }
      if (caller.authorization) headers.authorization = caller.authorization
      if (r.contentType !== undefined && body !== undefined) headers['content-type'] = r.contentType
      if (r.idempotencyKey !== null) headers['idempotency-key'] = r.idempotencyKey
      if (r.prefer !== null) headers.prefer = r.prefer

      const before = await counts()
      const reply = await send(base, agent, s.method, path, headers, body)
      const after = await counts()
      const what = `${caller.name} ${s.method} ${path} -> ${reply.status} ${reply.body.slice(0, 300)}`
      const tally = `${s.route} ${reply.status}`
      if (process.env.FUZZ_DEBUG && reply.status === 400 && reply.body) {
        // Which validations refuse most, to keep the generators producing requests that get further.
        const reason = `${s.route}: ${String(JSON.parse(reply.body).message).replace(/\[\d+\]/g, '[i]').replace(/"[^"]*"/g, '"…"').slice(0, 60)}`
        reasons.set(reason, (reasons.get(reason) ?? 0) + 1)
      }
      statuses.set(tally, (statuses.get(tally) ?? 0) + 1)

      assert.ok(reply.status >= 200 && reply.status < 500, `5xx or no status: ${what}`)
      const ok = reply.status < 300
      const guarded = path.startsWith('/v1/') || path.startsWith('/hooks/')
      if (ok && guarded) assert.ok(caller.scopes.length > 0, `2xx without a valid key: ${what}`)
      if (ok && s.method === 'DELETE' && guarded) assert.ok(caller.canDelete, `2xx DELETE without the permission: ${what}`)
      if (!ok) assert.deepEqual(after, before, `a rejected request changed rows: ${what}`)
      // Rows outside the caller's namespaces never change, whatever it asked.
      if (caller.name !== 'alpha') assert.equal(after.alpha, before.alpha, `fz-a changed: ${what}`)
      if (caller.name !== 'beta') assert.equal(after.beta, before.beta, `fz-b changed: ${what}`)
      assert.equal(after.other, before.other, `a namespace outside every key changed: ${what}`)
      if (!ok || s.method === 'HEAD' || reply.status === 204 || !guarded) return

      const answer = JSON.parse(reply.body)
      const foreignMark = caller.name === 'alpha' ? MARK.beta : MARK.alpha
      const inScope = (memory: { namespace: string }) => assert.ok(scopesAllow(caller.scopes, memory.namespace), `memory of ${memory.namespace} answered: ${what}`)
      if (s.route === 'list') answer.items.forEach(inScope)
      if (s.route === 'recall') answer.results.forEach(inScope)
      if (s.route === 'get') inScope(answer)
      if (s.route === 'hook' || s.route === 'recall' || s.route === 'list' || s.route === 'get') {
        assert.ok(!reply.body.includes(foreignMark), `another namespace's text answered: ${what}`)
      }

      // Every memory a save created reads back as the rules say, through the API, with the same key.
      if (s.route !== 'save' && s.route !== 'batch' && s.route !== 'turn') return
      const input = JSON.parse(body!.toString('utf8'))
      const created: Array<{ id: string; expected: ReturnType<typeof expectedMemory> }> = []
      if (s.route === 'save' && answer.created) created.push({ id: answer.id, expected: expectedMemory(input, input.content) })
      if (s.route === 'batch') {
        answer.items.forEach((item: { id: string; created: boolean }, index: number) => {
          if (item.created) created.push({ id: item.id, expected: expectedMemory(input.items[index], input.items[index].content) })
        })
      }
      // A turn says "created" when either half is new; with an Idempotency-Key the other half may be an earlier memory.
      if (s.route === 'turn' && answer.created && r.idempotencyKey === null) {
        created.push({ id: answer.ids[0], expected: expectedMemory(input, input.user_input, 'user') })
        created.push({ id: answer.ids[1], expected: expectedMemory(input, input.assistant_response, 'assistant') })
      }
      for (const { id, expected } of created) {
        assert.ok(scopesAllow(caller.scopes, expected.namespace), `saved into ${expected.namespace}: ${what}`)
        const read = await send(base, agent, 'GET', `/v1/memories/${id}`, { authorization: caller.authorization! }, undefined)
        assert.equal(read.status, 200, `a created memory cannot be read back: ${what}`)
        const { id: _id, created_at: _at, ...memory } = JSON.parse(read.body)
        assert.deepEqual(memory, expected, `read back differs: ${what}`)
        ids.push(id)
      }
    }

    test(`${RUNS} generated requests: no 5xx, no crossing, no stray rows, saves read back exactly`, { timeout: 600_000 }, async (t) => {
      await seed()
      const started = performance.now()
      await fc.assert(fc.asyncProperty(request, check), { seed: SEED, numRuns: RUNS, endOnFailure: true, includeErrorInReport: true })
      const seconds = (performance.now() - started) / 1000
      t.diagnostic(`${RUNS} requests in ${seconds.toFixed(1)} s; ${[...statuses].sort().map(([k, n]) => `${k}: ${n}`).join(', ')}`)
      if (process.env.FUZZ_DEBUG) t.diagnostic([...reasons].sort((a, b) => b[1] - a[1]).slice(0, 40).map(([k, n]) => `${n} ${k}`).join('\n'))
      const health = await send(base, agent, 'GET', '/health', {}, undefined)
      assert.equal(health.status, 200)
      // The seeded memories of the key that cannot delete are all still there.
      const { rows } = await store.db.query<{ n: number }>("SELECT count(*)::int AS n FROM memories WHERE content LIKE $1", [`${MARK.beta}%`])
      assert.equal(rows[0]!.n, 2)
    })
  })
}

/** What the generated requests found, kept as plain cases so they stay fixed whatever the seed. */
for (const backend of backends()) {
  describe(`cases found by generated requests on ${backend.name}`, () => {
    let store: TestStore
    let app: FastifyInstance
    before(async () => {
      store = await backend.create()
      app = await buildTestApp(store.db)
    })
    after(async () => {
      await app?.close()
      await store?.drop()
    })

    test('a metadata key holding a line break is kept (the response schema used to drop it)', async () => {
      const metadata = { 'a\nb': 1, 'c\r\nd': ['x'], 'e\u2028f': { 'g\nh': true } }
      const saved = await app.inject({ method: 'POST', url: '/v1/memories', payload: { content: 'keys', metadata } })
      assert.equal(saved.statusCode, 201)
      assert.deepEqual((await app.inject({ method: 'GET', url: `/v1/memories/${saved.json().id}` })).json().metadata, metadata)
      const listed = (await app.inject({ method: 'GET', url: '/v1/memories' })).json()
      assert.deepEqual(listed.items[0].metadata, metadata)
    })

    test('NUL and lone surrogates in lookups are normalised as saves are, never a 500', async () => {
      const saved = await app.inject({ method: 'POST', url: '/v1/memories', payload: { namespace: 'nul', content: 'deploy notes', session_id: 'a\u0000b', tags: ['o\u0000ps', '\ud800'], metadata: { k: 'v\u0000' } } })
      assert.equal(saved.statusCode, 201)
      const id = saved.json().id
      const recall = async (payload: object) => {
        const res = await app.inject({ method: 'POST', url: '/v1/recall', payload: { query: 'deploy', namespace: 'nul', mode: 'text', ...payload } })
        assert.equal(res.statusCode, 200, res.body)
        return res.json().results.map((r: { id: string }) => r.id)
      }
      assert.deepEqual(await recall({ session_id: 'a\u0000b' }), [id])
      assert.deepEqual(await recall({ filter: { tags: ['o\u0000ps', '\udc00'] } }), [id])
      assert.deepEqual(await recall({ filter: { metadata: { k: 'v\u0000' } } }), [id])
      assert.deepEqual(await recall({ filter: { metadata: { 'k\u0000': 'v' } } }), [id])
      assert.deepEqual(await recall({ filter: { exclude_session_id: 'a\u0000b' } }), [])
      const listed = await app.inject({ method: 'GET', url: '/v1/memories?namespace=nul&session_id=a%00b' })
      assert.equal(listed.statusCode, 200)
      assert.deepEqual(listed.json().items.map((m: { id: string }) => m.id), [id])
      const deleted = await app.inject({ method: 'DELETE', url: '/v1/memories?namespace=nul&session_id=a%00b' })
      assert.deepEqual(deleted.json(), { deleted: 1 })
    })
  })
}
