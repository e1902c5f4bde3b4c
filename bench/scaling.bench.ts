// What each part of Sage costs as the store grows (docs/scaling.md): on Postgres, for each size, fill one namespace
// through the service (with three small namespaces beside it), wait for the vector indexer, then measure
//   - the store's size: bytes per memory of the memories table, the HNSW graph and the backlog, and memories per GB;
//   - the indexing rate: vectors moved into the graph a second, from the fill's start to an empty backlog;
//   - recall latency at concurrency 1 (hybrid, vector, text), in the large namespace and in a small one;
//   - the service's own memory (RSS) once it is done.
//   npx tsx bench/scaling.bench.ts --sizes 10000,100000          (BENCH_DATABASE_URL: a Postgres with pgvector)
// Each size starts on a fresh database (sage_bench_<random>, dropped at the end) and a fresh service.
import { mkdtemp, rm } from 'node:fs/promises'
import { cpus, loadavg, tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import pg from 'pg'
import { readIndexer, waitForEmptyBacklog } from './backlog.js'
import { createBenchDatabase } from './bench-database.js'
import { fill } from './fill.js'
import { percentile } from './load.js'
import { startService } from './service.js'
import { parseExposition } from './usage.js'
import { createWorkload } from './workload.js'

const MAIN = 'scale-main'
const SMALL = ['scale-a', 'scale-b', 'scale-c']
/** Each small namespace holds this share of the main one, at most 5,000 (so it is searched exactly). */
const SMALL_SHARE = 0.02
const RECALLS = 300
const MODES = ['hybrid', 'vector', 'text'] as const

const { values } = parseArgs({ options: { sizes: { type: 'string', default: '10000,100000' }, recalls: { type: 'string', default: String(RECALLS) } } })
const sizes = values.sizes.split(',').map(Number)
const recalls = Number(values.recalls)
const adminUrl = process.env.BENCH_DATABASE_URL
if (!adminUrl) throw new Error('set BENCH_DATABASE_URL, e.g. postgres://postgres@127.0.0.1:5432/postgres')
if (sizes.some((size) => !Number.isInteger(size) || size < 1000)) throw new Error('--sizes: integers of at least 1000')

const log = (message: string) => console.error(`[${new Date().toISOString().slice(11, 19)}] ${message}`)
const ms = (value: number) => `${value.toFixed(1)} ms`

async function recallLatency(url: string, namespace: string, mode: string, queries: string[]): Promise<{ p50: number; p99: number }> {
  const times: number[] = []
  for (const query of queries) {
    const started = performance.now()
    const res = await fetch(`${url}/v1/recall`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ namespace, query, mode, k: 8 }) })
    await res.arrayBuffer()
    if (res.status !== 200) throw new Error(`recall answered ${res.status}`)
    times.push(performance.now() - started)
  }
  times.sort((a, b) => a - b)
  return { p50: percentile(times, 50), p99: percentile(times, 99) }
}

console.log(`${cpus().length} CPUs (${cpus()[0]?.model ?? 'unknown'}), load average at start ${loadavg().map((n) => n.toFixed(2)).join(' ')}`)
for (const size of sizes) {
  const database = await createBenchDatabase(adminUrl)
  const dataDir = await mkdtemp(join(tmpdir(), 'sage-scale-'))
  const service = await startService({ databaseUrl: database.url, dataDir, logFile: join(dataDir, 'sage.log') })
  const client = new pg.Client({ connectionString: database.url })
  // A dropped connection fails the query in flight (and so this size); unhandled, it would end the run before the
  // service is stopped and the database dropped.
  client.on('error', (error) => log(`the benchmark's own connection failed: ${error.message}`))
  await client.connect()
  try {
    const workload = createWorkload(20)
    const small = Math.min(5_000, Math.max(100, Math.round(size * SMALL_SHARE)))
    const plan = [{ namespace: MAIN, count: size }, ...SMALL.map((namespace) => ({ namespace, count: small }))]
    const total = size + small * SMALL.length
    log(`${size.toLocaleString('en-US')}: filling ${total.toLocaleString('en-US')} memories`)
    const before = await readIndexer(service.url)
    const filled = await fill(service.url, workload, plan, { batchSize: 1_000, concurrency: 2 })
    const drain = await waitForEmptyBacklog(service.url, { since: before, label: `${size}`, log })
    await client.query('ANALYZE memories, memory_vectors, vector_backlog')

    const { rows: [sizes] } = await client.query<{ memories: string; graph: string; backlog: string; database: string }>(
      `SELECT pg_total_relation_size('memories') AS memories, pg_total_relation_size('memory_vectors') AS graph,
              pg_total_relation_size('vector_backlog') AS backlog, pg_database_size(current_database()) AS database`
    )
    const stored = Number(sizes!.memories) + Number(sizes!.graph) + Number(sizes!.backlog)
    console.log(`\n${size.toLocaleString('en-US')} memories in ${MAIN} (+3 × ${small.toLocaleString('en-US')}), ${total.toLocaleString('en-US')} in all`)
    console.log(`  fill (ingest)      ${Math.round(filled.itemsPerSecond).toLocaleString('en-US')} memories/s`)
    console.log(`  indexing           ${Math.round(drain.indexed / drain.seconds).toLocaleString('en-US')} vectors/s (${drain.indexed.toLocaleString('en-US')} in ${drain.seconds.toFixed(0)} s from the fill's start)`)
    console.log(`  storage            memories ${(Number(sizes!.memories) / total).toFixed(0)} B + graph ${(Number(sizes!.graph) / total).toFixed(0)} B + backlog ${(Number(sizes!.backlog) / total).toFixed(0)} B a memory` +
      ` = ${(stored / total).toFixed(0)} B: ${Math.floor(1e9 / (stored / total)).toLocaleString('en-US')} memories per GB (database ${(Number(sizes!.database) / 1e6).toFixed(0)} MB)`)
    for (const [label, namespace] of [[`recall, ${MAIN}`, MAIN], [`recall, ${SMALL[0]}`, SMALL[0]!]] as const) {
      for (const mode of MODES) {
        const queries = Array.from({ length: recalls }, () => workload.query())
        const { p50, p99 } = await recallLatency(service.url, namespace, mode, queries)
        console.log(`  ${`${label} ${mode}`.padEnd(28)} p50 ${ms(p50)}  p99 ${ms(p99)}`)
      }
    }
    const metrics = parseExposition(await (await fetch(`${service.url}/metrics`)).text())
    const rss = metrics.find((s) => s.name === 'process_resident_memory_bytes')?.value ?? 0
    console.log(`  service RSS        ${(rss / 1e6).toFixed(0)} MB`)
  } finally {
    await client.end()
    await service.stop()
    await database.drop()
    await rm(dataDir, { recursive: true, force: true })
  }
}
console.log(`\nload average at the end ${loadavg().map((n) => n.toFixed(2)).join(' ')}`)
