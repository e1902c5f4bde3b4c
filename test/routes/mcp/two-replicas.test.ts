import type { FetchLike } from '@modelcontextprotocol/client'
import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import { createPostgresDatabase } from '../../helper.js'
import { callTool, ERAS, mcpClient } from '../../support/mcp-client.js'
import { startSage, type SageProcess } from '../../support/sage-process.js'

const postgresUrl = process.env.TEST_DATABASE_URL
if (!postgresUrl && process.env.CI === 'true') throw new Error('TEST_DATABASE_URL must point at a Postgres with pgvector when CI=true')
const SECRET = 'replica-secret-0123456789abcdef'

/**
 * A fetch that sends each request to the next replica in turn (or only to those still in `live`), as a load
 * balancer without session affinity would: one client, one connection handshake, many servers.
 */
function roundRobin(replicas: SageProcess[], live: Set<SageProcess>): { fetch: FetchLike; served: Map<SageProcess, number> } {
  const served = new Map(replicas.map((replica) => [replica, 0]))
  let next = 0
  const fetch: FetchLike = async (input, init) => {
    const candidates = replicas.filter((replica) => live.has(replica))
    const replica = candidates[next++ % candidates.length]!
    served.set(replica, served.get(replica)! + 1)
    const url = new URL(input instanceof Request ? input.url : String(input))
    const target = new URL(replica.url)
    url.host = target.host
    return globalThis.fetch(url, init)
  }
  return { fetch, served }
}

describe('MCP on two replicas behind one client', { skip: postgresUrl ? false : 'TEST_DATABASE_URL is not set' }, () => {
  let database: Awaited<ReturnType<typeof createPostgresDatabase>> | undefined
  let replicas: SageProcess[] = []
  before(async () => {
    database = await createPostgresDatabase(postgresUrl!)
    const env = { DATABASE_URL: database.url, SAGE_API_KEYS: `agent:${SECRET}=shop:delete` }
    // One after the other: both migrating at once is covered elsewhere, and two starts at once double the wait here.
    replicas = [await startSage(env), await startSage(env)]
  })
  after(async () => {
    for (const replica of replicas) await replica.stop('SIGKILL')
    await database?.drop()
  })

  for (const era of ERAS) {
    test(`${era} era: the client moves between replicas without connecting again, and on to one alone`, async (t) => {
      const live = new Set(replicas)
      const { fetch, served } = roundRobin(replicas, live)
      const client = await mcpClient(t, `${replicas[0]!.url}/mcp`, { apiKey: SECRET, era, fetch })
      const [a, b] = replicas as [SageProcess, SageProcess]

      const saved = []
      for (const content of [`${era}: the checkout service retries payment captures three times`, `${era}: coupons expire at midnight in the shop's time zone`]) {
        const result = await callTool(client, 'remember', { content })
        assert.equal(result.isError, undefined, JSON.stringify(result))
        saved.push(result.structuredContent!.id as string)
      }
      // Whichever replica saved a memory, the other one reads it: the store is the only state.
      for (let i = 0; i < 4; i++) {
        const recalled = await callTool(client, 'recall', { query: 'how often are payment captures retried?', mode: 'text' })
        assert.equal(recalled.structuredContent!.results[0].id, saved[0])
        assert.equal((await callTool(client, 'get_memory', { id: saved[1]! })).structuredContent!.namespace, 'shop')
      }
      assert.ok(served.get(a)! >= 4 && served.get(b)! >= 4, `both replicas served: ${[...served.values()].join(' and ')}`)
      const toolCalls = await Promise.all(replicas.map(async (replica) => {
        const metrics = await (await globalThis.fetch(`${replica.url}/metrics`)).text()
        return [...metrics.matchAll(/^sage_mcp_tool_call_duration_seconds_count\{[^}]*outcome="ok"\} (\d+)$/gm)].reduce((sum, match) => sum + Number(match[1]), 0)
      }))
      assert.ok(toolCalls.every((count) => count > 0), `tool calls per replica: ${toolCalls.join(', ')}`)

      // A replica leaving the rotation is a non-event for the client: the next requests go to the other one.
      live.delete(a)
      const remaining = await callTool(client, 'forget', { id: saved[0]! })
      assert.equal(remaining.structuredContent!.deleted, 1)
      assert.equal((await callTool(client, 'recall', { query: 'payment captures retried', mode: 'text' })).structuredContent!.results.length, 0)
      assert.equal((await callTool(client, 'forget', { id: saved[1]! })).structuredContent!.deleted, 1)
    })
  }

  test('a replica that shuts down mid-session leaves the client to the other, with nothing to reconnect', async (t) => {
    const live = new Set(replicas)
    const { fetch } = roundRobin(replicas, live)
    const client = await mcpClient(t, `${replicas[0]!.url}/mcp`, { apiKey: SECRET, fetch })
    const id = (await callTool(client, 'remember', { content: 'the warehouse closes at six' })).structuredContent!.id as string
    const [a] = replicas as [SageProcess]
    assert.equal(await a.stop('SIGTERM'), 0)
    live.delete(a)
    assert.equal((await callTool(client, 'get_memory', { id })).structuredContent!.content, 'the warehouse closes at six')
    assert.equal((await callTool(client, 'forget', { id })).structuredContent!.deleted, 1)
  })
})
