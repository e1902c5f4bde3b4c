/**
 * The outage drill: a built Sage on a Postgres cluster and a redis-server of its own, under a mixed load, while
 * Postgres crashes and freezes, Redis is killed and frozen, and large bodies arrive; then, once the queue has
 * drained, whether every acknowledged save is in the database exactly once. Prints a table per fault.
 *
 *   npm run build && npx tsx bench/drill.ts [--help]
 */
import { once } from 'node:events'
import { mkdtemp, rm } from 'node:fs/promises'
import { cpus, loadavg, tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import pg from 'pg'
import { createPostgresCluster, postgresClusterAvailable, type PostgresCluster } from '../test/support/postgres-cluster.js'
import { mixedRequest, type LoadResult } from '../test/support/mixed-load.js'
import { startProbe } from '../test/support/event-loop-probe.js'
import { counterValue } from '../test/support/queued-saves.js'
import { startRedisServer, type RedisServer } from '../test/support/redis.js'
import { startSage, type SageProcess } from '../test/support/sage-process.js'
import { waitFor } from '../test/support/wait-for.js'
import { eventLoopLag, percentile, postJson, randomBase64 } from './event-loop.bench.js'

const USAGE = `Usage: npx tsx bench/drill.ts [options]   (after npm run build)

  --concurrency N        load connections (default 32)
  --request-timeout MS   the service's REQUEST_TIMEOUT_MS (default 3000)
  --warmup S             load before the first fault (default 10)
  --settle S             load after each dependency is back (default 8)
  --pg-down S            Postgres stopped -m immediate for S (default 10)
  --pg-freeze S          Postgres frozen with SIGSTOP for S (default 45)
  --redis-down S         Redis killed (SIGKILL) for S before its restart (default 5)
  --redis-freeze S       Redis frozen with SIGSTOP for S (default 10)
  --batches N            10 MB batches, one after another (default 2)
  --hooks N              9 MB hook bodies from each of 4 connections (default 2)
  --help                 this text`

const { values: flags } = parseArgs({
  options: {
    concurrency: { type: 'string', default: '32' },
    'request-timeout': { type: 'string', default: '3000' },
    warmup: { type: 'string', default: '10' },
    settle: { type: 'string', default: '8' },
    'pg-down': { type: 'string', default: '10' },
    'pg-freeze': { type: 'string', default: '45' },
    'redis-down': { type: 'string', default: '5' },
    'redis-freeze': { type: 'string', default: '10' },
    batches: { type: 'string', default: '2' },
    hooks: { type: 'string', default: '2' },
    help: { type: 'boolean', default: false }
  }
})

/** What the drill sends: saves synchronous or queued, each with an Idempotency-Key, recalls and both hooks. */
type DrillKind = 'sync-save' | 'async-save' | 'recall' | 'hook' | 'stop-hook'
const KINDS: readonly DrillKind[] = ['sync-save', 'async-save', 'recall', 'hook', 'stop-hook']

interface Sent extends LoadResult {
  drillKind: DrillKind
  /** When the request left (Date.now()). */
  sentAt: number
}

/** One fault's window: from its injection until `settle` after the dependency was back. */
interface Phase {
  name: string
  start: number
  /** When the dependency answered again (undefined for the large bodies, which take nothing away). */
  returned?: number
  /** Which answer shows the dependency is back: a synchronous save needs Postgres, a 202 needs Redis. */
  recoveredBy?: 'sync-save' | 'async-save'
  end: number
  alive: boolean
  lag?: { p99: number; max: number }
}

const seconds = (s: string | undefined) => Number(s) * 1000
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))
const ok = (status: Sent['status']) => typeof status === 'number' && status >= 200 && status < 300
const loadAverage = () => loadavg().map((n) => n.toFixed(2)).join(', ')

/**
 * `concurrency` loops sending the kinds in turn until stop(). A refused save is sent again, same n and key, as the
 * worker's next save of that kind, as a client that retries would: so a save answered late and retried shows as a duplicate if the key does not hold.
 */
function startDrillLoad(url: string, concurrency: number) {
  const sent: Sent[] = []
  let running = true
  let next = 0
  const loops = Array.from({ length: concurrency }, async (_, worker) => {
    const unacknowledged = new Map<DrillKind, number>()
    for (let i = worker; running; i++) {
      const drillKind = KINDS[i % KINDS.length]!
      const isSave = drillKind === 'sync-save' || drillKind === 'async-save'
      const n = (isSave ? unacknowledged.get(drillKind) : undefined) ?? next++
      const headers: Record<string, string> = isSave ? { 'idempotency-key': `drill-${n}` } : {}
      if (drillKind === 'async-save') headers.prefer = 'respond-async'
      const kind = isSave ? 'save' : drillKind === 'stop-hook' ? 'stop-hook' : drillKind === 'hook' ? 'hook' : 'recall'
      const sentAt = Date.now()
      const result = await mixedRequest(url, kind, n, headers)
      sent.push({ ...result, drillKind, sentAt })
      if (isSave && ok(result.status)) unacknowledged.delete(drillKind)
      else if (isSave) unacknowledged.set(drillKind, n)
      // A refused request is answered in a millisecond: a short pause keeps the loop from spinning.
      await sleep(20)
    }
  })
  return {
    sent,
    async stop() {
      running = false
      await Promise.all(loops)
    }
  }
}

/** The service's gauge `name` from /metrics (NaN when /metrics does not answer within 5 s). */
async function gauge(url: string, name: string): Promise<number> {
  const res = await fetch(`${url}/metrics`, { signal: AbortSignal.timeout(5_000) }).catch(() => undefined)
  return res ? counterValue(await res.text(), name) : NaN
}

async function main(): Promise<void> {
  if (flags.help) {
    console.log(USAGE)
    return
  }
  if (!postgresClusterAvailable()) throw new Error('initdb and pg_ctl not found: set PG_BIN to a Postgres with pgvector')
  const requestTimeoutMs = Number(flags['request-timeout'])
  const concurrency = Number(flags.concurrency)
  const dir = await mkdtemp(join(tmpdir(), 'sage-drill-'))
  const logFile = join(dir, 'sage.log')
  let finished = false
  const loadBefore = loadAverage()
  const started = Date.now()
  console.log(`drill ${new Date().toISOString()}, ${cpus().length} cores, load average before ${loadBefore}`)

  let cluster: PostgresCluster | undefined
  let redis: RedisServer | undefined
  let sage: SageProcess | undefined
  let frozen = false
  try {
    cluster = await createPostgresCluster()
    redis = await startRedisServer(undefined, { appendOnlyDir: dir })
    const env = {
      DATABASE_URL: cluster.url,
      REDIS_URL: redis.url,
      REQUEST_TIMEOUT_MS: String(requestTimeoutMs),
      // The limiter on, with a limit nobody meets, so it asks Redis on every request as in production.
      RATE_LIMIT_MAX: '1000000000',
      LOG_LEVEL: 'info'
    }
    console.log(`settings: ${Object.entries(env).map(([k, v]) => `${k}=${v}`).join(' ')} (defaults: DB_QUERY_TIMEOUT_MS ${requestTimeoutMs - 500}, REDIS_COMMAND_TIMEOUT_MS 2000, DB_POOL_MAX 10); redis appendonly yes, appendfsync always`)
    console.log(`flags: ${JSON.stringify(flags)}; service log ${logFile}`)
    sage = await startSage(env, 60_000, { logFile })
    const url = sage.url
    // /health answers before the migrations (pgvector's among them) have run: wait for the store itself.
    await waitFor('/health/ready 200', async () => (await fetch(`${url}/health/ready`)).status === 200, 60_000)
    const alive = () => sage!.child.exitCode === null && sage!.child.signalCode === null

    const load = startDrillLoad(url, concurrency)
    const phases: Phase[] = []
    await eventLoopLag(url)
    const warmupStart = Date.now()
    await sleep(seconds(flags.warmup))
    phases.push({ name: 'none (the load alone)', start: warmupStart, end: Date.now(), alive: alive(), lag: await eventLoopLag(url) })

    /** Runs `inject` (which resolves once the dependency is back), waits for the first save it allows, then `settle`. */
    async function fault(name: string, recoveredBy: Phase['recoveredBy'], inject: () => Promise<void>): Promise<void> {
      await eventLoopLag(url)
      const start = Date.now()
      console.log(`${name}...`)
      await inject()
      const returned = Date.now()
      await waitFor(`a ${recoveredBy} after ${name}`, () => load.sent.some((r) => r.drillKind === recoveredBy && r.at >= returned && (recoveredBy === 'async-save' ? r.status === 202 : ok(r.status))), 60_000).catch((error: Error) => console.log(error.message))
      await sleep(seconds(flags.settle))
      phases.push({ name, start, returned, recoveredBy, end: Date.now(), alive: alive(), lag: await eventLoopLag(url) })
    }

    await fault(`Postgres stopped -m immediate for ${flags['pg-down']} s`, 'sync-save', async () => {
      await cluster!.stop('immediate')
      await sleep(seconds(flags['pg-down']))
      await cluster!.start()
    })
    await fault(`Postgres frozen (SIGSTOP) for ${flags['pg-freeze']} s`, 'sync-save', async () => {
      await cluster!.signal('SIGSTOP')
      frozen = true
      await sleep(seconds(flags['pg-freeze']))
      await cluster!.signal('SIGCONT')
      frozen = false
    })
    await fault(`Redis killed (SIGKILL), restarted after ${flags['redis-down']} s`, 'async-save', async () => {
      const exited = once(redis!.child, 'exit')
      redis!.signal('SIGKILL')
      await exited
      await sleep(seconds(flags['redis-down']))
      redis = await startRedisServer(redis!.port, { appendOnlyDir: dir })
    })
    await fault(`Redis frozen (SIGSTOP) for ${flags['redis-freeze']} s`, 'async-save', async () => {
      redis!.signal('SIGSTOP')
      await sleep(seconds(flags['redis-freeze']))
      redis!.signal('SIGCONT')
    })

    console.log('large bodies...')
    const batchIds: string[] = []
    const batchTimes: number[] = []
    const hookTimes: number[] = []
    const hookStatuses: number[] = []
    await eventLoopLag(url)
    const largeStart = Date.now()
    const probe = startProbe(`${url}/health`, 10)
    for (let b = 0; b < Number(flags.batches); b++) {
      const items = Array.from({ length: 100 }, () => ({ namespace: 'load', content: randomBase64(100_000) }))
      const t = performance.now()
      const reply = await postJson(`${url}/v1/memories/batch`, JSON.stringify({ items }), { 'idempotency-key': `drill-batch-${b}` })
      batchTimes.push(performance.now() - t)
      if (reply.status === 201) batchIds.push(...(JSON.parse(reply.body) as { items: Array<{ id: string }> }).items.map((item) => item.id))
      else console.log(`batch ${b} answered ${reply.status}: ${reply.body.slice(0, 200)}`)
    }
    const batchLag = await eventLoopLag(url)
    await Promise.all(Array.from({ length: 4 }, async (_, c) => {
      for (let h = 0; h < Number(flags.hooks); h++) {
        const body = JSON.stringify({ hook_event_name: 'UserPromptSubmit', session_id: `large-${c}`, cwd: '/tmp', prompt_id: `large-${c}-${h}`, prompt: randomBase64(9_000_000) })
        const t = performance.now()
        hookStatuses.push((await postJson(`${url}/hooks/claude-code?namespace=load`, body)).status)
        hookTimes.push(performance.now() - t)
      }
    }))
    const hookLag = await eventLoopLag(url)
    const health = await probe.stop()
    phases.push({ name: `large bodies: ${flags.batches} batches of 10 MB, 4 x ${flags.hooks} hooks of 9 MB`, start: largeStart, end: Date.now(), alive: alive(), lag: { p99: Math.max(batchLag.p99, hookLag.p99), max: Math.max(batchLag.max, hookLag.max) } })

    await load.stop()
    // Acknowledged is not yet written: the queue and the hooks' retry buffer empty first.
    const drained = await waitFor('the queue and the hook retry buffer drained', async () => {
      const values = await Promise.all(['sage_queue_depth', 'sage_queue_pending', 'sage_hook_retry_buffer_size'].map((name) => gauge(url, name)))
      return values.every((v) => v === 0)
    }, 120_000).then(() => true, (error: Error) => {
      console.log(error.message)
      return false
    })
    const deadLetters = await gauge(url, 'sage_queue_dead_letters')

    const sent = load.sent
    const acknowledged = [...sent.filter((r) => r.id !== undefined).map((r) => r.id!), ...batchIds]
    const client = new pg.Client({ connectionString: cluster.url })
    await client.connect()
    const { rows: found } = await client.query<{ id: string }>('SELECT id::text FROM memories WHERE id = ANY($1::uuid[])', [acknowledged])
    const { rows: [duplicates] } = await client.query<{ n: number }>("SELECT coalesce(sum(n - 1), 0)::int AS n FROM (SELECT count(*) AS n FROM memories WHERE namespace = 'load' GROUP BY content HAVING count(*) > 1) d")
    const { rows: [hookRows] } = await client.query<{ n: number }>("SELECT count(*)::int AS n FROM memories WHERE namespace = 'load' AND metadata->>'tool' = 'claude-code'")
    await client.end()
    const lost = new Set(acknowledged).size - found.length

    report({ phases, sent, requestTimeoutMs, lost, duplicates: duplicates!.n, drained, deadLetters, acknowledged: acknowledged.length, hookRows: hookRows!.n, batchTimes, hookTimes, hookStatuses, health, sageAlive: alive() })
    console.log(`total ${((Date.now() - started) / 1000).toFixed(0)} s; load average before ${loadBefore}, after ${loadAverage()}`)
    finished = true
  } finally {
    if (frozen) await cluster?.signal('SIGCONT').catch(() => undefined)
    await sage?.stop('SIGKILL')
    await redis?.stop()
    await cluster?.destroy()
    // A drill that broke off keeps the service's log for reading.
    if (finished) await rm(dir, { recursive: true, force: true })
    else console.log(`the drill broke off; the service log is kept: ${logFile}`)
  }
}

interface Outcome {
  phases: Phase[]
  sent: Sent[]
  requestTimeoutMs: number
  lost: number
  duplicates: number
  drained: boolean
  deadLetters: number
  acknowledged: number
  hookRows: number
  batchTimes: number[]
  hookTimes: number[]
  /** 0: the body was refused unread and the socket closed. */
  hookStatuses: number[]
  health: number[]
  sageAlive: boolean
}

/** The per-fault table (Markdown, for docs/operations.md) and every figure that misses its target. */
function report(o: Outcome): void {
  const ms = (n: number) => `${Math.round(n).toLocaleString('en')} ms`
  const misses: string[] = []
  console.log('\n| fault | process alive | status codes (count) | every 503 with Retry-After | longest request | back → first save | event-loop p99 / max |')
  console.log('|---|---|---|---|---|---|---|')
  for (const phase of o.phases) {
    const inside = o.sent.filter((r) => r.sentAt >= phase.start && r.sentAt < phase.end)
    const counts = new Map<string, number>()
    for (const r of inside) counts.set(String(r.status), (counts.get(String(r.status)) ?? 0) + 1)
    const statuses = [...counts].sort(([a], [b]) => a.localeCompare(b)).map(([status, n]) => `${status} × ${n}`).join(', ')
    const refused = inside.filter((r) => r.status === 503)
    const withRetryAfter = refused.every((r) => r.retryAfter !== null)
    const longest = inside.reduce<Sent | undefined>((a, r) => (a === undefined || r.ms > a.ms ? r : a), undefined)
    const first = phase.recoveredBy === undefined ? undefined : inside.find((r) => r.drillKind === phase.recoveredBy && r.at >= phase.returned! && (phase.recoveredBy === 'async-save' ? r.status === 202 : ok(r.status)))
    const recovery = first === undefined ? undefined : (first.at - phase.returned!) / 1000
    const recoveryText = phase.recoveredBy === undefined ? '-' : recovery === undefined ? 'none' : `${recovery.toFixed(2)} s (${phase.recoveredBy === 'async-save' ? '202' : first!.status})`
    const lag = phase.lag ? `${ms(phase.lag.p99)} / ${ms(phase.lag.max)}` : '-'
    console.log(`| ${phase.name} | ${phase.alive ? 'yes' : 'no'} | ${statuses} | ${refused.length === 0 ? '-' : withRetryAfter ? 'yes' : 'no'} | ${longest ? `${ms(longest.ms)} (${longest.drillKind})` : '-'} | ${recoveryText} | ${lag} |`)
    if (!phase.alive) misses.push(`${phase.name}: the process exited`)
    if (!withRetryAfter) misses.push(`${phase.name}: a 503 without Retry-After`)
    const other5xx = inside.filter((r) => r.status === 'network error' || (typeof r.status === 'number' && r.status >= 500 && r.status !== 503))
    if (other5xx.length > 0) misses.push(`${phase.name}: ${other5xx.length} answers a 5xx other than 503, or none (${[...new Set(other5xx.map((r) => r.status))].join(', ')})`)
    if (longest && longest.ms > o.requestTimeoutMs + 1000) misses.push(`${phase.name}: longest request ${ms(longest.ms)} > REQUEST_TIMEOUT_MS + 1 s`)
    if (phase.recoveredBy !== undefined && (recovery === undefined || recovery > 2)) misses.push(`${phase.name}: first save ${recovery ?? 'never'} s after the dependency was back (> 2 s)`)
    if (phase.lag && phase.lag.p99 > 50) misses.push(`${phase.name}: event-loop p99 ${ms(phase.lag.p99)} > 50 ms`)
  }
  const kinds = (kind: DrillKind) => o.sent.filter((r) => r.drillKind === kind && r.id !== undefined).length
  console.log(`\nlarge bodies: batch requests ${o.batchTimes.map(ms).join(', ')}; 9 MB hooks answered ${[...new Set(o.hookStatuses)].join(', ')} in p50 ${ms(percentile(o.hookTimes, 50))}, max ${ms(Math.max(...o.hookTimes))}`)
  console.log(`/health every 10 ms during the large bodies (${o.health.length} probes): p50 ${ms(percentile(o.health, 50))}, p99 ${ms(percentile(o.health, 99))}, max ${ms(Math.max(...o.health))}`)
  console.log(`requests: ${o.sent.length}; acknowledged saves ${o.acknowledged} (synchronous ${kinds('sync-save')}, with respond-async ${kinds('async-save')}, batch items ${o.acknowledged - kinds('sync-save') - kinds('async-save')})`)
  console.log(`queue and hook retry buffer drained: ${o.drained ? 'yes' : 'no'}; dead letters: ${o.deadLetters}; acknowledged saves lost: ${o.lost}; duplicate rows: ${o.duplicates}; hook memories stored: ${o.hookRows}; process alive at the end: ${o.sageAlive ? 'yes' : 'no'}`)
  if (o.lost > 0) misses.push(`${o.lost} acknowledged saves lost`)
  if (o.duplicates > 0) misses.push(`${o.duplicates} duplicate rows`)
  console.log(misses.length === 0 ? '\nevery figure within its target' : `\nmissed targets:\n${misses.map((m) => `- ${m}`).join('\n')}`)
}

await main()
