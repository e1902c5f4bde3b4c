// The Redis benchmark: acknowledged asynchronous saves (single at c=32, batches of 1,000), drain rate into
// Postgres, end-to-end lag, and recall latency on a cache hit. Run with `npx tsx bench/queue.bench.ts` (after `npm run build`)
// (after `npm run build`). It starts its own Sage on a fresh database of the machine's Postgres and uses the
// machine's Redis under a key prefix of its own, removed at the end.
//   BENCH_DATABASE_URL  admin URL of the Postgres server (default postgres://postgres@127.0.0.1:5432/postgres)
//   BENCH_REDIS_URL     Redis URL (default redis://127.0.0.1:6379/0)
//   BENCH_SECONDS       length of each autocannon phase (default 10)
//   BENCH_DRAIN_SECONDS longest the drain is watched (default 60)
import autocannon from 'autocannon'
import { randomBytes } from 'node:crypto'
import { readFile } from 'node:fs/promises'
import { Agent, request } from 'node:http'
import { cpus, loadavg, totalmem } from 'node:os'
import { Redis } from 'ioredis'
import pg from 'pg'
import { queueKeys } from '../src/queue/queue-keys.js'
import { startSage as startSageProcess, type SageProcess } from '../test/support/sage-process.js'
import { createBenchDatabase } from './bench-database.js'

const ADMIN_URL = process.env.BENCH_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres'
const REDIS_URL = process.env.BENCH_REDIS_URL ?? 'redis://127.0.0.1:6379/0'
const SECONDS = Number(process.env.BENCH_SECONDS ?? 10)
const DRAIN_SECONDS = Number(process.env.BENCH_DRAIN_SECONDS ?? 60)
const PREFIX = `sage-bench:${randomBytes(4).toString('hex')}:`
const keys = queueKeys(PREFIX)

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))
const percentile = (sorted: number[], p: number) => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? NaN
const round = (n: number, digits = 2) => Math.round(n * 10 ** digits) / 10 ** digits

/** Sage on `databaseUrl` with the machine's Redis under this run's prefix. */
function startSage(databaseUrl: string): Promise<SageProcess> {
  return startSageProcess(
    {
      DATABASE_URL: databaseUrl,
      REDIS_URL,
      REDIS_KEY_PREFIX: PREFIX,
      RATE_LIMIT_MAX: '1000000000',
      // The ack phases hold the table lock longer than the default 30 s statement timeout would allow.
      DB_STATEMENT_TIMEOUT_MS: '600000',
      DB_QUERY_TIMEOUT_MS: '601000'
    },
    60_000
  )
}

const agent = new Agent({ keepAlive: true, maxSockets: 64 })

/** One HTTP request over a kept-alive socket; resolves with status and body. */
function call(url: string, method: string, body?: unknown, headers: Record<string, string> = {}): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const payload = body === undefined ? undefined : JSON.stringify(body)
    const req = request(url, { method, agent, headers: payload ? { 'content-type': 'application/json', ...headers } : headers }, (res) => {
      let text = ''
      res.setEncoding('utf8')
      res.on('data', (chunk: string) => (text += chunk))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text }))
    })
    req.on('error', reject)
    req.end(payload)
  })
}

const ASYNC = { 'content-type': 'application/json', prefer: 'respond-async' }
const memory = (i: number) => ({
  namespace: 'bench',
  session_id: `s${i % 50}`,
  role: i % 2 ? 'assistant' : 'user',
  content: `Decision ${i}: rotate the API keys of service ${i % 97} every 90 days; the runbook lives in ops/keys.md and the on-call owns it.`,
  metadata: { tool: 'bench', n: i % 10 }
})

/** CPU seconds (user + system) the process has used so far, from /proc: unlike throughput, not skewed by other load. */
async function cpuSeconds(pid: number): Promise<number> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8')
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  return (Number(fields[11]) + Number(fields[12])) / 100
}

async function autocannonRun(options: autocannon.Options): Promise<autocannon.Result> {
  return new Promise((resolve, reject) => {
    autocannon(options, (error, result) => (error ? reject(error) : resolve(result)))
  })
}

async function main(): Promise<void> {
  const database = await createBenchDatabase(ADMIN_URL)
  const redis = new Redis(REDIS_URL)
  const admin = new pg.Client({ connectionString: database.url })
  const results: Record<string, unknown> = {
    machine: { cpus: cpus().length, cpu: cpus()[0]?.model, memory_gb: Math.round(totalmem() / 2 ** 30), load_average_at_start: loadavg().map((n) => round(n, 1)) },
    seconds_per_phase: SECONDS
  }
  let sage = await startSage(database.url)
  await admin.connect()
  try {
    // Warm up the routes, the JIT and the caches.
    for (let i = 0; i < 200; i++) await call(`${sage.url}/v1/memories`, 'POST', memory(i), { prefer: 'respond-async' })
    await waitDrained(redis, 60_000)

    // 1 and 2. Acknowledged asynchronous saves. A table lock holds the consumer's first write back, so this
    // measures the acknowledging path alone on a machine of 2 CPUs; the drain is measured next, on its own.
    await admin.query('BEGIN')
    await admin.query('LOCK TABLE memories IN EXCLUSIVE MODE')
    const pid = sage.child.pid!
    let cpuBefore = await cpuSeconds(pid)
    const single = await autocannonRun({
      url: `${sage.url}/v1/memories`, method: 'POST', headers: ASYNC, body: JSON.stringify(memory(1)), connections: 32, duration: SECONDS
    })
    const singleCpu = (await cpuSeconds(pid)) - cpuBefore
    const batchBody = JSON.stringify({ items: Array.from({ length: 1000 }, (_, i) => memory(i)) })
    cpuBefore = await cpuSeconds(pid)
    const batch = await autocannonRun({
      url: `${sage.url}/v1/memories/batch`, method: 'POST', headers: ASYNC, body: batchBody, connections: 8, duration: SECONDS
    })
    const batchCpu = (await cpuSeconds(pid)) - cpuBefore
    results.single_async = {
      connections: 32,
      acknowledged_per_s: round(single['2xx'] / single.duration, 0),
      non_2xx: single.non2xx,
      errors: single.errors,
      latency_ms: { p50: single.latency.p50, p99: single.latency.p99 },
      // What one fully available core of the service could acknowledge, from the CPU it actually used.
      service_cpu_us_per_save: round((singleCpu * 1e6) / Math.max(1, single['2xx']), 0),
      per_service_core_per_s: round(single['2xx'] / Math.max(singleCpu, 0.01), 0)
    }
    results.batch_async = {
      connections: 8,
      items_per_request: 1000,
      requests_per_s: round(batch['2xx'] / batch.duration, 1),
      items_per_s: round((batch['2xx'] * 1000) / batch.duration, 0),
      non_2xx: batch.non2xx,
      errors: batch.errors,
      latency_ms: { p50: batch.latency.p50, p99: batch.latency.p99 },
      service_cpu_us_per_item: round((batchCpu * 1e6) / Math.max(1, batch['2xx'] * 1000), 1),
      items_per_service_core_per_s: round((batch['2xx'] * 1000) / Math.max(batchCpu, 0.01), 0)
    }

    // 3. Drain: release the lock and count what lands in the store for DRAIN_SECONDS (or until empty).
    const queuedEntries = await redis.xlen(keys.stream)
    const queuedMemories = single['2xx'] + batch['2xx'] * 1000
    const before = (await admin.query<{ n: number }>('SELECT count(*)::int AS n FROM memories')).rows[0]!.n
    const drainStarted = performance.now()
    await admin.query('COMMIT')
    while ((await redis.xlen(keys.stream)) > 0 && performance.now() - drainStarted < DRAIN_SECONDS * 1000) await sleep(100)
    const drainSeconds = (performance.now() - drainStarted) / 1000
    const landed = (await admin.query<{ n: number }>('SELECT count(*)::int AS n FROM memories')).rows[0]!.n - before
    results.drain = {
      queued: { entries: queuedEntries, memories: queuedMemories },
      seconds: round(drainSeconds, 1),
      memories_written: landed,
      memories_per_s: round(landed / drainSeconds, 0)
    }

    // What is left is not needed: a fresh queue and an empty table for the rest.
    await sage.stop()
    await dropPrefix(redis)
    await admin.query('TRUNCATE memories')
    sage = await startSage(database.url)
    for (let i = 0; i < 100; i++) await call(`${sage.url}/v1/memories`, 'POST', memory(i), { prefer: 'respond-async' })
    await waitDrained(redis, 60_000)

    // 4. End-to-end lag: saves at a steady rate, each sampled save's row watched for in the store.
    results.lag = {}
    for (const rate of [10, 50]) (results.lag as Record<string, unknown>)[`${rate}_per_s`] = await measureLag(sage.url, admin, rate)

    // 5. Recall latency on a cache hit, one request at a time over a kept-alive socket.
    const rows = (await admin.query<{ n: number }>('SELECT count(*)::int AS n FROM memories')).rows[0]!.n
    const query = { namespace: 'bench', query: 'how often are the API keys rotated?', k: 8 }
    for (let i = 0; i < 50; i++) await call(`${sage.url}/v1/recall`, 'POST', query)
    const hits: number[] = []
    const serverMs: number[] = []
    for (let i = 0; i < 2000; i++) {
      const started = performance.now()
      const res = await call(`${sage.url}/v1/recall`, 'POST', query)
      hits.push(performance.now() - started)
      serverMs.push((JSON.parse(res.body) as { took_ms: number }).took_ms)
    }
    const misses: number[] = []
    for (let i = 0; i < 300; i++) {
      const started = performance.now()
      await call(`${sage.url}/v1/recall`, 'POST', { ...query, query: `how often are the API keys of service ${i} rotated?` })
      misses.push(performance.now() - started)
    }
    hits.sort((a, b) => a - b)
    serverMs.sort((a, b) => a - b)
    misses.sort((a, b) => a - b)
    results.recall = {
      rows_in_namespace: rows,
      cache_hit_ms: { p50: round(percentile(hits, 50), 3), p99: round(percentile(hits, 99), 3), server_took_ms_p50: percentile(serverMs, 50) },
      cache_miss_ms: { p50: round(percentile(misses, 50), 3), p99: round(percentile(misses, 99), 3) }
    }
    const metrics = await (await fetch(`${sage.url}/metrics`)).text()
    results.cache_counters = metrics.split('\n').filter((line) => line.startsWith('sage_cache_'))
    ;(results.machine as Record<string, unknown>).load_average_at_end = loadavg().map((n) => round(n, 1))
  } finally {
    await admin.end().catch(() => undefined)
    await sage.stop()
    await dropPrefix(redis)
    redis.disconnect()
    await database.drop()
    agent.destroy()
  }
  console.log(JSON.stringify(results, null, 2))
}

async function waitDrained(redis: Redis, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while ((await redis.xlen(keys.stream)) > 0) {
    if (Date.now() > deadline) throw new Error('the queue did not drain')
    await sleep(20)
  }
}

/** How often the lag phase looks for sampled rows: finer would load the store it measures. */
const POLL_MS = 5

/** Sends `rate` async single saves a second for the phase; about 25 a second are timed from their 202 to their row being visible. */
async function measureLag(url: string, db: pg.Client, rate: number): Promise<unknown> {
  const acknowledgedAt = new Map<string, number>()
  const lags: number[] = []
  let sending = true
  const poller = (async () => {
    while (sending || acknowledgedAt.size > 0) {
      if (acknowledgedAt.size > 0) {
        const { rows } = await db.query<{ id: string }>('SELECT id FROM memories WHERE id = ANY($1::uuid[])', [[...acknowledgedAt.keys()]])
        const now = performance.now()
        for (const { id } of rows) {
          lags.push(now - acknowledgedAt.get(id)!)
          acknowledgedAt.delete(id)
        }
      }
      await sleep(POLL_MS)
    }
  })()
  const started = performance.now()
  const total = rate * SECONDS
  const inFlight: Array<Promise<void>> = []
  for (let i = 0; i < total; i++) {
    const due = started + (i * 1000) / rate
    const wait = due - performance.now()
    if (wait > 1) await sleep(wait)
    const sampled = i % Math.max(1, Math.round(rate / 25)) === 0
    inFlight.push(
      call(`${url}/v1/memories`, 'POST', { ...memory(i), content: `lag ${rate} ${i}: ${memory(i).content}` }, { prefer: 'respond-async' }).then((res) => {
        if (res.status !== 202) throw new Error(`expected 202, got ${res.status}: ${res.body}`)
        if (sampled) acknowledgedAt.set((JSON.parse(res.body) as { id: string }).id, performance.now())
      })
    )
  }
  await Promise.all(inFlight)
  sending = false
  await poller
  lags.sort((a, b) => a - b)
  return { samples: lags.length, p50_ms: round(percentile(lags, 50), 1), p99_ms: round(percentile(lags, 99), 1), poll_interval_ms: POLL_MS }
}

async function dropPrefix(redis: Redis): Promise<void> {
  let cursor = '0'
  do {
    const [next, found] = await redis.scan(cursor, 'MATCH', `${PREFIX}*`, 'COUNT', 1000)
    cursor = next
    if (found.length > 0) await redis.del(...found)
  } while (cursor !== '0')
}

main().catch((error: unknown) => {
  console.error(error)
  process.exitCode = 1
})
