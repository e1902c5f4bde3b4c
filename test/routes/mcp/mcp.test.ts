import { ProtocolError, SdkHttpError } from '@modelcontextprotocol/client'
import assert from 'node:assert/strict'
import { request as httpRequest } from 'node:http'
import { before, beforeEach, describe, test } from 'node:test'
import { createPgDatabase } from '../../../src/db/pg-database.js'
import { migrate } from '../../../src/db/migrate.js'
import { backends, buildTestApp, memoryCount } from '../../helper.js'
import { listen, useListeningApp } from '../../support/listening-app.js'
import { callTool, ERAS, mcpClient, textOf } from '../../support/mcp-client.js'
import { createPostgresCluster, postgresClusterAvailable } from '../../support/postgres-cluster.js'

const SECRETS = {
  alice: 'alice-secret-0123456789abcdef',
  bob: 'bob-secret-0123456789abcdef00',
  root: 'root-secret-0123456789abcdef00'
}
// alice: a pattern of namespaces and no delete; bob: one plain namespace, which becomes his default, and delete.
const KEYS = [`alice:${SECRETS.alice}=team-a/*`, `bob:${SECRETS.bob}=billing:delete`, `root:${SECRETS.root}=*:delete`].join(';')
const TOOLS = ['remember', 'recall', 'get_memory', 'forget', 'list_sessions', 'recent']

interface RawAnswer {
  status: number
  headers: Record<string, string | string[] | undefined>
  body: string
}

/** A request with exactly these headers (fetch will not send a Host of one's choosing). */
function raw(url: string, options: { method?: string; headers?: Record<string, string>; body?: string } = {}): Promise<RawAnswer> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, { method: options.method ?? 'POST', headers: options.headers }, (res) => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (chunk: string) => (body += chunk))
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body }))
    })
    req.on('error', reject)
    req.end(options.body)
  })
}

const INITIALIZE = JSON.stringify({
  jsonrpc: '2.0',
  id: 1,
  method: 'initialize',
  params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'raw', version: '1' } }
})
const JSON_RPC = { 'content-type': 'application/json', accept: 'application/json, text/event-stream' }

for (const backend of backends()) {
  describe(`MCP over Streamable HTTP on ${backend.name}`, () => {
    const suite = useListeningApp(backend, { SAGE_API_KEYS: KEYS })
    let url: string
    before(() => {
      url = `${suite.url}/mcp`
    })
    beforeEach(() => suite.store.reset())

    for (const era of ERAS) {
      test(`${era} era: the six tools are listed with their REST schemas, output schemas and when to use them`, async (t) => {
        const client = await mcpClient(t, url, { apiKey: SECRETS.root, era })
        assert.equal(client.getProtocolEra(), era)
        assert.match(client.getInstructions() ?? '', /long-term memory/)
        const { tools } = await client.listTools()
        assert.deepEqual(tools.map((tool) => tool.name), TOOLS)
        for (const tool of tools) {
          assert.ok((tool.description ?? '').length > 60, `${tool.name} says when to use it`)
          assert.equal(tool.inputSchema.type, 'object')
          assert.equal((tool.inputSchema as { additionalProperties?: boolean }).additionalProperties, false, `${tool.name} refuses unknown arguments`)
          assert.equal(tool.outputSchema?.type, 'object')
          assert.equal(typeof tool.annotations?.readOnlyHint, 'boolean')
        }
        const remember = tools.find((tool) => tool.name === 'remember')!
        // The same limits as POST /v1/memories, from the same TypeBox schema.
        assert.deepEqual((remember.inputSchema.properties as Record<string, { maxLength?: number }>).content!.maxLength, 100_000)
        assert.deepEqual(remember.inputSchema.required, ['content'])
        assert.equal(tools.find((tool) => tool.name === 'forget')!.annotations?.destructiveHint, true)
      })

      test(`${era} era: every tool answers structured content and readable text`, async (t) => {
        const client = await mcpClient(t, url, { apiKey: SECRETS.root, era })
        const remembered = await callTool(client, 'remember', { content: 'We pinned pnpm 9 for the monorepo build', tags: ['build'], session_id: 's1', metadata: { tool: 'test' } })
        assert.equal(remembered.isError, undefined, textOf(remembered))
        const id = remembered.structuredContent!.id as string
        assert.deepEqual(remembered.structuredContent, { id, created: true, namespace: 'default' })
        assert.match(textOf(remembered), new RegExp(`Remembered in namespace "default" \\(id ${id}\\)`))
        for (const content of ['Retries use exponential backoff with jitter, capped at 30 s', 'The billing export runs nightly at 02:00 UTC']) {
          await callTool(client, 'remember', { content, session_id: 's2' })
        }

        const again = await callTool(client, 'remember', { content: 'We pinned pnpm 9 for the monorepo build' })
        assert.deepEqual(again.structuredContent, { id, created: false, namespace: 'default' })
        assert.match(textOf(again), /Already remembered/)

        const recalled = await callTool(client, 'recall', { query: 'which pnpm version is pinned?', k: 3 })
        assert.equal(recalled.isError, undefined, textOf(recalled))
        const hits = recalled.structuredContent!.results as Array<{ id: string; score: number; scores: object; content: string }>
        assert.equal(hits[0]!.id, id)
        assert.equal(typeof hits[0]!.score, 'number')
        assert.ok(hits[0]!.scores)
        assert.match(recalled.structuredContent!.context as string, /pnpm 9/)
        assert.match(textOf(recalled), /pnpm 9[\s\S]*ids, best first: /)

        const read = await callTool(client, 'get_memory', { id })
        assert.equal(read.structuredContent!.content, 'We pinned pnpm 9 for the monorepo build')
        assert.deepEqual(read.structuredContent!.metadata, { tool: 'test' })
        assert.match(textOf(read), /#build\] namespace "default", session "s1"/)

        const sessions = await callTool(client, 'list_sessions', {})
        assert.deepEqual((sessions.structuredContent!.items as Array<{ session_id: string; count: number }>).map((s) => [s.session_id, s.count]), [['s2', 2], ['s1', 1]])
        assert.match(textOf(sessions), /- s2: 2 memories/)

        const newest = await callTool(client, 'recent', { limit: 2 })
        assert.equal((newest.structuredContent!.items as unknown[]).length, 2)
        assert.equal(typeof newest.structuredContent!.next_cursor, 'string')
        const rest = await callTool(client, 'recent', { limit: 2, cursor: newest.structuredContent!.next_cursor })
        assert.deepEqual((rest.structuredContent!.items as Array<{ id: string }>).map((m) => m.id), [id])
        assert.match(textOf(newest), /More: call recent again with cursor/)

        const forgotten = await callTool(client, 'forget', { id })
        assert.deepEqual(forgotten.structuredContent, { deleted: 1, namespace: 'default', id })
        const session = await callTool(client, 'forget', { session_id: 's2' })
        assert.deepEqual(session.structuredContent, { deleted: 2, namespace: 'default', session_id: 's2' })
        assert.equal(await memoryCount(suite.store.db), 0)
        const audit = await suite.store.db.query<{ key_name: string; deleted_count: number }>('SELECT key_name, deleted_count FROM delete_audit ORDER BY id DESC LIMIT 2')
        assert.deepEqual(audit.rows.map((row) => [row.key_name, row.deleted_count]), [['root', 2], ['root', 1]])
      })
    }

    test('the namespace is the argument, else ?namespace=, else the key\'s one plain scope, else "default"', async (t) => {
      const root = await mcpClient(t, url, { apiKey: SECRETS.root })
      assert.equal((await callTool(root, 'remember', { content: 'a' })).structuredContent!.namespace, 'default')
      assert.equal((await callTool(root, 'remember', { content: 'b', namespace: 'ops' })).structuredContent!.namespace, 'ops')
      const scoped = await mcpClient(t, `${url}?namespace=team-a/web`, { apiKey: SECRETS.root })
      assert.equal((await callTool(scoped, 'remember', { content: 'c' })).structuredContent!.namespace, 'team-a/web')
      assert.equal((await callTool(scoped, 'remember', { content: 'd', namespace: 'ops' })).structuredContent!.namespace, 'ops')
      // bob's key covers exactly one namespace, so that is where his calls go.
      const bob = await mcpClient(t, url, { apiKey: SECRETS.bob })
      assert.equal((await callTool(bob, 'remember', { content: 'e' })).structuredContent!.namespace, 'billing')
      // alice's covers a pattern, which names no namespace: "default", outside her scope, is refused.
      const alice = await mcpClient(t, url, { apiKey: SECRETS.alice })
      const refused = await callTool(alice, 'remember', { content: 'f' })
      assert.equal(refused.isError, true)
      assert.equal(textOf(refused), 'namespace "default" is outside this key\'s scope')
      const rows = await suite.store.db.query<{ namespace: string; content: string }>('SELECT namespace, content FROM memories ORDER BY content')
      assert.deepEqual(rows.rows.map((row) => `${row.namespace}:${row.content}`), ['default:a', 'ops:b', 'team-a/web:c', 'ops:d', 'billing:e'])
    })

    test('two keys: each reaches only its own namespaces, deletes only with the delete permission, and a refusal changes nothing', async (t) => {
      const alice = await mcpClient(t, `${url}?namespace=team-a/web`, { apiKey: SECRETS.alice })
      const bob = await mcpClient(t, url, { apiKey: SECRETS.bob })
      const aliceId = (await callTool(alice, 'remember', { content: 'team A deploys on Tuesdays', session_id: 'a1' })).structuredContent!.id as string
      const bobId = (await callTool(bob, 'remember', { content: 'invoices are numbered per year', session_id: 'b1' })).structuredContent!.id as string

      for (const [tool, args] of [
        ['recall', { query: 'invoices', namespace: 'billing' }],
        ['recent', { namespace: 'billing' }],
        ['list_sessions', { namespace: 'billing' }],
        ['remember', { content: 'sneaky', namespace: 'billing' }],
        ['forget', { session_id: 'b1', namespace: 'billing' }]
      ] as const) {
        const result = await callTool(alice, tool, args)
        assert.equal(result.isError, true, `${tool}: ${textOf(result)}`)
        assert.match(textOf(result), /outside this key's scope|may not delete/)
      }
      // By id a memory outside the scope looks missing, as on the REST API.
      const read = await callTool(bob, 'get_memory', { id: aliceId })
      assert.deepEqual([read.isError, textOf(read)], [true, 'memory not found'])
      assert.equal((await callTool(bob, 'forget', { id: aliceId })).isError, true)
      const noDelete = await callTool(alice, 'forget', { id: aliceId })
      assert.match(textOf(noDelete), /may not delete/)
      assert.equal(await memoryCount(suite.store.db), 2)

      assert.equal((await callTool(alice, 'recall', { query: 'deploys' })).structuredContent!.results[0].id, aliceId)
      assert.deepEqual((await callTool(bob, 'forget', { id: bobId })).structuredContent, { deleted: 1, namespace: 'billing', id: bobId })
      assert.equal(await memoryCount(suite.store.db), 1)
    })

    test('bad arguments are tool errors that name the field, and change nothing', async (t) => {
      const client = await mcpClient(t, url, { apiKey: SECRETS.root })
      const cases: Array<[string, Record<string, unknown>, RegExp]> = [
        ['remember', {}, /^arguments\.content is required$/],
        ['remember', { content: '' }, /content must be a non-empty string/],
        ['remember', { content: 'x', namepsace: 'ops' }, /unknown field "namepsace"/],
        ['remember', { content: 'x', namespace: 'no spaces please' }, /namespace has characters outside/],
        ['remember', { content: 'x', tags: 'ops' }, /tags must be an array/],
        ['remember', { content: '\u0000\u0007' }, /content must be a non-empty string/],
        ['remember', { content: 'x', metadata: { blob: 'y'.repeat(20_000) } }, /metadata/],
        ['recall', { query: 'x', k: '8' }, /k must be a integer/],
        ['recall', { query: 'x', k: 51 }, /k must be <= 50/],
        ['recall', { query: 'x', mode: 'fuzzy' }, /mode must be one of hybrid, vector, text/],
        ['recall', { query: 'x', format: 'json' }, /unknown field "format"/],
        ['get_memory', { id: 'not-a-uuid' }, /id must be a valid uuid/],
        ['forget', {}, /either id .* or session_id/],
        ['forget', { id: '6f1c2d3e-4b5a-4c6d-8e7f-9a0b1c2d3e4f', session_id: 's' }, /either id .* or session_id/],
        ['recent', { cursor: 'bogus' }, /cursor/],
        ['recent', { limit: 101 }, /limit must be <= 100/]
      ]
      for (const [tool, args, reason] of cases) {
        const result = await callTool(client, tool, args)
        assert.equal(result.isError, true, `${tool} ${JSON.stringify(args).slice(0, 80)}`)
        assert.match(textOf(result), reason)
        assert.equal(result.structuredContent, undefined)
      }
      assert.equal(await memoryCount(suite.store.db), 0)
    })

    test('an unknown tool is the protocol\'s invalid-params error, naming the tools there are', async (t) => {
      const client = await mcpClient(t, url, { apiKey: SECRETS.root })
      await assert.rejects(client.callTool({ name: 'delete_everything', arguments: {} }), (error: unknown) => {
        assert.ok(error instanceof ProtocolError)
        assert.equal(error.code, -32602)
        assert.match(error.message, /unknown tool "delete_everything"; Sage's tools are remember, recall/)
        return true
      })
    })

    test('a huge argument: past the content limit a tool error, past the body limit a 413 naming the setting; the server serves on', async (t) => {
      const client = await mcpClient(t, url, { apiKey: SECRETS.root })
      const long = await callTool(client, 'remember', { content: 'x'.repeat(150_000) })
      assert.deepEqual([long.isError, textOf(long)], [true, 'arguments.content must be at most 100000 characters'])
      await assert.rejects(client.callTool({ name: 'remember', arguments: { content: 'y'.repeat(1_200_000) } }), (error: unknown) => {
        assert.ok(error instanceof SdkHttpError, String(error))
        assert.equal(error.status, 413)
        return true
      })
      const bodyLimit = await raw(url, { headers: { ...JSON_RPC, authorization: `Bearer ${SECRETS.root}` }, body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'remember', arguments: { content: 'y'.repeat(1_200_000) } } }) })
      assert.equal(bodyLimit.status, 413)
      assert.match(JSON.parse(bodyLimit.body).message, /larger than the limit of 1048576 bytes \(BODY_LIMIT_BYTES\)/)
      assert.equal((await callTool(client, 'remember', { content: 'still here' })).structuredContent!.created, true)
      assert.equal(await memoryCount(suite.store.db), 1)
    })

    test('without a valid key every request is a 401, before anything is read', async () => {
      for (const authorization of [undefined, 'Bearer not-a-key-0123456789abcdef', `Basic ${SECRETS.root}`]) {
        const answer = await raw(url, { headers: { ...JSON_RPC, ...(authorization ? { authorization } : {}) }, body: INITIALIZE })
        assert.equal(answer.status, 401, answer.body)
        assert.match(String(answer.headers['www-authenticate']), /^Bearer realm="sage"/)
        assert.equal(JSON.parse(answer.body).code, 'SAGE_UNAUTHORIZED')
      }
    })

    test('Host and Origin are checked against DNS rebinding, before the key', async () => {
      const key = { authorization: `Bearer ${SECRETS.root}` }
      for (const headers of [{ host: 'evil.example' }, { host: 'evil.example:8765' }, { origin: 'http://evil.example' }, { origin: 'null' }] as Array<Record<string, string>>) {
        const answer = await raw(url, { headers: { ...JSON_RPC, ...key, ...headers }, body: INITIALIZE })
        assert.equal(answer.status, 403, JSON.stringify(headers))
        assert.match(JSON.parse(answer.body).message, /refuses it against DNS rebinding/)
        // A rebinding page learns nothing, not even whether a key is needed.
        const keyless = await raw(url, { headers: { ...JSON_RPC, ...headers }, body: INITIALIZE })
        assert.equal(keyless.status, 403)
      }
      for (const headers of [{ host: 'localhost:8765' }, { host: '[::1]:8765' }, { origin: 'http://localhost:6274' }, { origin: 'http://127.0.0.1:3000' }] as Array<Record<string, string>>) {
        const answer = await raw(url, { headers: { ...JSON_RPC, ...key, ...headers }, body: INITIALIZE })
        assert.equal(answer.status, 200, `${JSON.stringify(headers)}: ${answer.body}`)
      }
    })

    test('stateless: no session id is handed out, GET and DELETE are 405, a bad ?namespace= a 400', async () => {
      const key = { authorization: `Bearer ${SECRETS.root}` }
      const initialized = await raw(url, { headers: { ...JSON_RPC, ...key }, body: INITIALIZE })
      assert.equal(initialized.status, 200)
      assert.equal(initialized.headers['mcp-session-id'], undefined)
      for (const method of ['GET', 'DELETE']) {
        assert.equal((await raw(url, { method, headers: { accept: 'text/event-stream', ...key } })).status, 405, method)
      }
      const badNamespace = await raw(`${url}?namespace=${encodeURIComponent('not a namespace')}`, { headers: { ...JSON_RPC, ...key }, body: INITIALIZE })
      assert.equal(badNamespace.status, 400)
      assert.match(JSON.parse(badNamespace.body).message, /namespace/)
      const notJson = await raw(url, { headers: { ...JSON_RPC, ...key }, body: '{"jsonrpc": "2.0", "id": 1, "method": ' })
      assert.equal(notJson.status, 400)
      const wrongType = await raw(url, { headers: { 'content-type': 'text/plain', accept: JSON_RPC.accept, ...key }, body: INITIALIZE })
      assert.equal(wrongType.status, 415)
    })

    test('tool calls are counted by tool and outcome, with their duration, and MCP saves by kind', async (t) => {
      const client = await mcpClient(t, url, { apiKey: SECRETS.bob })
      await callTool(client, 'remember', { content: 'counted' })
      await callTool(client, 'remember', { content: '' })
      await callTool(client, 'recall', { query: 'x', namespace: 'elsewhere' })
      await callTool(client, 'get_memory', { id: '6f1c2d3e-4b5a-4c6d-8e7f-9a0b1c2d3e4f' })
      const metrics = (await suite.app.inject({ method: 'GET', url: '/metrics' })).body
      assert.match(metrics, /sage_mcp_tool_call_duration_seconds_count\{tool="remember",outcome="ok"\} [1-9]/)
      assert.match(metrics, /sage_mcp_tool_call_duration_seconds_count\{tool="remember",outcome="invalid"\} [1-9]/)
      assert.match(metrics, /sage_mcp_tool_call_duration_seconds_count\{tool="recall",outcome="forbidden"\} [1-9]/)
      assert.match(metrics, /sage_mcp_tool_call_duration_seconds_count\{tool="get_memory",outcome="not_found"\} [1-9]/)
      assert.match(metrics, /sage_mcp_tool_call_duration_seconds_bucket\{le="0.005",tool="remember",outcome="ok"\}/)
      assert.match(metrics, /sage_saves_total\{kind="mcp",outcome="created"\} [1-9]/)
      assert.match(metrics, /http_request_duration_seconds_count\{method="POST",route="\/mcp",status_code="200"\}/)
    })
  })
}

describe('MCP on an open Sage (no keys, loopback)', () => {
  const suite = useListeningApp(backends()[0]!, { MCP_ALLOWED_HOSTS: 'sage.internal', MCP_ALLOWED_ORIGINS: 'app.example' })
  let url: string
  before(() => {
    url = `${suite.url}/mcp`
  })

  test('needs no key, may delete, and uses "default"', async (t) => {
    const client = await mcpClient(t, url)
    const saved = await callTool(client, 'remember', { content: 'open for my own machine' })
    assert.equal(saved.structuredContent!.namespace, 'default')
    assert.equal((await callTool(client, 'forget', { id: saved.structuredContent!.id })).structuredContent!.deleted, 1)
  })

  test('MCP_ALLOWED_HOSTS and MCP_ALLOWED_ORIGINS add names to the local ones, and only those', async () => {
    assert.equal((await raw(url, { headers: { ...JSON_RPC, host: 'sage.internal' }, body: INITIALIZE })).status, 200)
    assert.equal((await raw(url, { headers: { ...JSON_RPC, origin: 'https://app.example' }, body: INITIALIZE })).status, 200)
    assert.equal((await raw(url, { headers: { ...JSON_RPC, host: 'sage.internal.evil.example' }, body: INITIALIZE })).status, 403)
    assert.equal((await raw(url, { headers: { ...JSON_RPC, origin: 'https://evil.example' }, body: INITIALIZE })).status, 403)
  })
})

describe('MCP with the embedder down', () => {
  const down = { id: 'down/384', dimension: 384, kind: 'lexical' as const, embed: async () => Promise.reject(new Error('connection refused')) }
  const suite = useListeningApp(backends()[0]!, {}, { embedder: down })
  let url: string
  before(() => {
    url = `${suite.url}/mcp`
  })

  test('a vector recall is a tool error that says when to retry; a save still succeeds and hybrid falls back to text', async (t) => {
    const client = await mcpClient(t, url)
    assert.equal((await callTool(client, 'remember', { content: 'saved without its vector' })).structuredContent!.created, true)
    const vector = await callTool(client, 'recall', { query: 'saved', mode: 'vector' })
    assert.deepEqual([vector.isError, textOf(vector)], [true, 'the embedder is unavailable; recall with mode "text" or "hybrid" meanwhile (retry in 10 s)'])
    assert.equal((await callTool(client, 'recall', { query: 'saved vector' })).structuredContent!.results.length, 1)
    assert.match((await suite.app.inject({ method: 'GET', url: '/metrics' })).body, /sage_mcp_tool_call_duration_seconds_count\{tool="recall",outcome="unavailable"\} 1/)
  })
})

describe('MCP while Postgres is down', () => {
  const skip = !postgresClusterAvailable() && process.env.CI !== 'true' && 'initdb not found (set PG_BIN)'
  test('every call is a tool error that says to retry, the service serves on, and calls succeed once Postgres is back', { skip }, async (t) => {
    const cluster = await createPostgresCluster()
    t.after(() => cluster.destroy())
    const db = createPgDatabase({ url: cluster.url, poolMax: 4, statementTimeoutMs: 30_000 })
    await migrate(db)
    const app = await buildTestApp(db)
    t.after(async () => {
      await app.close()
      await db.close()
    })
    const client = await mcpClient(t, `${await listen(app)}/mcp`)
    const id = (await callTool(client, 'remember', { content: 'written before the outage' })).structuredContent!.id as string

    await cluster.stop()
    for (const [tool, args] of [['remember', { content: 'during the outage' }], ['recall', { query: 'outage' }], ['get_memory', { id }], ['recent', {}], ['list_sessions', {}], ['forget', { id }]] as const) {
      const result = await callTool(client, tool, args)
      assert.deepEqual([result.isError, textOf(result)], [true, 'the database is unavailable: it refused the connection (retry in 5 s)'], tool)
    }
    assert.match((await app.inject({ method: 'GET', url: '/metrics' })).body, /sage_mcp_tool_call_duration_seconds_count\{tool="remember",outcome="unavailable"\} 1/)

    await cluster.start()
    const back = await callTool(client, 'get_memory', { id })
    assert.equal(back.structuredContent?.content, 'written before the outage', textOf(back))
  })
})
