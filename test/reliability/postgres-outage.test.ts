import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { callTool, mcpClient, textOf } from '../support/mcp-client.js'
import { createPostgresCluster, postgresClusterAvailable } from '../support/postgres-cluster.js'
import { mixedRequest, startMixedLoad, unexpected } from '../support/mixed-load.js'
import { startSage } from '../support/sage-process.js'
import { waitFor } from '../support/wait-for.js'

const skip = !postgresClusterAvailable() && process.env.CI !== 'true' && 'initdb not found (set PG_BIN)'
/** Short, so a frozen database is a 503 within seconds; the assertion allows the one second over it. */
const REQUEST_TIMEOUT_MS = 3_000
const BASE_ENV = { LOG_LEVEL: 'info', RATE_LIMIT_MAX: '0', REQUEST_TIMEOUT_MS: String(REQUEST_TIMEOUT_MS), DB_POOL_MAX: '4' }

const summary = (results: ReadonlyArray<{ kind: string; status: unknown }>) => {
  const counts = new Map<string, number>()
  for (const r of results) counts.set(`${r.kind} ${String(r.status)}`, (counts.get(`${r.kind} ${String(r.status)}`) ?? 0) + 1)
  return JSON.stringify([...counts])
}

describe('the service over a Postgres that crashes, freezes or is not there yet', { skip }, () => {
  test('a crash (pg_ctl -m immediate) under load: the process stays up, answers 2xx or 503 with Retry-After, and recovers within seconds of the restart', async (t) => {
    const cluster = await createPostgresCluster()
    t.after(() => cluster.destroy())
    const sage = await startSage({ DATABASE_URL: cluster.url, ...BASE_ENV })
    t.after(() => sage.stop())
    assert.equal((await mixedRequest(sage.url, 'save', 0)).status, 201)

    const load = startMixedLoad(sage.url, 6)
    await waitFor('some load before the crash', () => load.results.length > 30)
    await cluster.stop('immediate')
    const downSince = Date.now()
    await waitFor('requests refused while Postgres is down', () => load.results.some((r) => r.at > downSince && r.status === 503))
    // An agent's recall over MCP meets the same outage: a tool error that says when to retry, counted in the outage.
    const mcp = await mcpClient(t, `${sage.url}/mcp`)
    const refusedBefore = Number((await (await fetch(`${sage.url}/metrics`)).text()).match(/sage_dependency_refused_total\{dependency="database"\} (\d+)/)?.[1] ?? 0)
    let mcpAnswer: Awaited<ReturnType<typeof callTool>> | undefined
    for (let i = 0; i < 3; i++) mcpAnswer = await callTool(mcp, 'recall', { query: 'deploy pipeline', namespace: 'load' })
    assert.equal(mcpAnswer?.isError, true)
    assert.match(textOf(mcpAnswer!), /retry in \d+ s/)
    // Long enough for every background worker to meet the outage (the folder, the indexer, the hook retries).
    await new Promise((resolve) => setTimeout(resolve, 3_000))
    await cluster.start()
    const upSince = Date.now()
    const recovered: number = await waitFor('a save stored after the restart', async () => {
      const r = await mixedRequest(sage.url, 'save', -1)
      return r.status === 201 ? Date.now() : 0
    }, 30_000)
    await new Promise((resolve) => setTimeout(resolve, 1_000))
    const results = await load.stop()

    assert.equal(sage.child.exitCode, null, `the process exited:\n${sage.output()}`)
    assert.deepEqual(unexpected(results).slice(0, 5), [], summary(results))
    assert.ok(results.some((r) => r.status === 503), summary(results))
    assert.ok(recovered - upSince < 8_000, `first save stored ${recovered - upSince} ms after the restart`)
    const afterRecovery = results.filter((r) => r.at > recovered + 500)
    assert.ok(afterRecovery.length > 0 && afterRecovery.every((r) => r.status === 200 || r.status === 201), summary(afterRecovery))
    // One warning for the outage, not a stack per refused request.
    assert.equal(sage.output().match(/"database is down or busy/g)?.length, 1, sage.output().slice(-3000))
    assert.match(sage.output(), /"dependency":"database","refused":\d+.*"msg":"database is back"/)
    assert.doesNotMatch(sage.output(), /"msg":"request failed"/)
    const metrics = await (await fetch(`${sage.url}/metrics`)).text()
    assert.match(metrics, /sage_dependency_up\{dependency="database"\} 1/)
    assert.match(metrics, /sage_dependency_refused_total\{dependency="database"\} [1-9]/)
    assert.ok(Number(metrics.match(/sage_dependency_refused_total\{dependency="database"\} (\d+)/)?.[1]) >= refusedBefore + 3, 'the MCP refusals are counted')
    assert.doesNotMatch(sage.output(), /"msg":"MCP tool call refused"/)
    // Background loops say it once an outage, and once when they work again, not every round.
    for (const message of ['folding term statistics failed', 'vector indexing round failed', 'hook save retry failed']) {
      const lines = sage.output().split('\n').filter((line) => line.includes(`"msg":"${message}`))
      assert.ok(lines.length <= 1, lines.join('\n'))
    }
  })

  test('started while Postgres is down: it serves (/health 200, /health/ready 503, data 503 with Retry-After), then migrates and serves once Postgres is up', async (t) => {
    const cluster = await createPostgresCluster()
    t.after(() => cluster.destroy())
    await cluster.stop()
    const sage = await startSage({ DATABASE_URL: cluster.url, ...BASE_ENV })
    t.after(() => sage.stop())

    assert.equal((await fetch(`${sage.url}/health`)).status, 200)
    const ready = await fetch(`${sage.url}/health/ready`)
    assert.equal(ready.status, 503)
    for (const kind of ['save', 'recall'] as const) {
      const r = await mixedRequest(sage.url, kind, 0)
      assert.deepEqual([r.status, r.retryAfter !== null], [503, true], kind)
    }
    assert.equal((await mixedRequest(sage.url, 'hook', 0)).status, 200)

    await cluster.start()
    await waitFor('/health/ready 200 once Postgres is up', async () => (await fetch(`${sage.url}/health/ready`)).status === 200, 20_000)
    assert.equal((await mixedRequest(sage.url, 'save', 1)).status, 201)
    const recall = await fetch(`${sage.url}/v1/recall`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ namespace: 'load', query: 'deploy pipeline' }) })
    assert.equal(recall.status, 200)
    assert.ok(((await recall.json()) as { results: unknown[] }).results.length > 0)
    // The hook's save, refused while the store was not ready, was kept and written once it was.
    await waitFor('the hook prompt saved by the retry', async () => {
      const res = await fetch(`${sage.url}/v1/memories?namespace=load&limit=50`)
      const { items } = (await res.json()) as { items: Array<{ content: string }> }
      return items.some((m) => m.content.includes('how does the deploy pipeline work 0'))
    }, 20_000)
    assert.equal(sage.child.exitCode, null)
  })

  test('a frozen Postgres (SIGSTOP): requests end with 503 within REQUEST_TIMEOUT_MS + 1 s, and the service serves again after SIGCONT', async (t) => {
    const cluster = await createPostgresCluster()
    t.after(() => cluster.destroy())
    const sage = await startSage({ DATABASE_URL: cluster.url, ...BASE_ENV })
    t.after(() => sage.stop())
    assert.equal((await mixedRequest(sage.url, 'save', 0)).status, 201)

    await cluster.signal('SIGSTOP')
    t.after(() => cluster.signal('SIGCONT').catch(() => undefined))
    const frozen = await Promise.all(Array.from({ length: 8 }, (_, i) => mixedRequest(sage.url, (['save', 'recall'] as const)[i % 2]!, i)))
    const hook = await mixedRequest(sage.url, 'hook', 99)
    await cluster.signal('SIGCONT')

    for (const r of frozen) {
      assert.equal(r.status, 503, summary(frozen))
      assert.notEqual(r.retryAfter, null)
      assert.ok(r.ms < REQUEST_TIMEOUT_MS + 1_000, `${r.kind} took ${Math.round(r.ms)} ms`)
    }
    assert.equal(hook.status, 200)
    await waitFor('a save stored after SIGCONT', async () => (await mixedRequest(sage.url, 'save', 100)).status === 201, 20_000)
    assert.equal(sage.child.exitCode, null, sage.output())
    assert.doesNotMatch(sage.output(), /"msg":"request failed"/)
  })
})
