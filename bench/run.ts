// The benchmark harness behind `npm run bench`: drives the real service over HTTP with autocannon (see BENCHMARKS.md).
import { PGlite } from '@electric-sql/pglite'
import { vector } from '@electric-sql/pglite-pgvector'
import { mkdir, mkdtemp, rm } from 'node:fs/promises'
import { cpus, tmpdir, totalmem } from 'node:os'
import { join, relative } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import pg from 'pg'
import { readIndexer, waitForEmptyBacklog } from './backlog.js'
import { createBenchDatabase, type BenchDatabase } from './bench-database.js'
import { fill, type FillPlan } from './fill.js'
import { runLoad, type LoadOptions } from './load.js'
import { loadConfig } from '../src/config.js'
import { createEmbedder } from '../src/embedder/create-embedder.js'
import type { Embedder } from '../src/embedder/embedder.js'
import { describeThroughput, measureEmbedder } from './embedder-throughput.js'
import { askService, compareWithExact, type RecallAtK, type SqlClient } from './recall-at-k.js'
import { RECALL_MODES, renderFailure, renderResults, writeResults, type Phase, type RunInfo, type SizeResult, type StoreResult, type StoreSection } from './report.js'
import type { SageProcess } from '../test/support/sage-process.js'
import { startService } from './service.js'
import { machineBusySeconds, watchUsage } from './usage.js'
import { createWorkload, userPromptSubmits, type Workload } from './workload.js'

const MAIN_NAMESPACE = 'bench-main'
/** Other projects in the same store: together a tenth of the main one, so the index is shared as in real use. */
const OTHER_NAMESPACES = ['bench-alpha', 'bench-beta', 'bench-gamma']
const OTHER_SHARE = 0.1
const SAVE_NAMESPACE = 'bench-saves'
const BATCH_NAMESPACE = 'bench-batch'
const BATCH_SIZE = 500
const FILL_BATCH_SIZE = 1_000
const FILL_CONCURRENCY = 2
const SINGLE_CONNECTIONS = 32
const BATCH_CONNECTIONS = 4
const RECALL_CONNECTIONS = 1
const RECALL_K = 10
/** Texts per call when the embedder alone is timed: as many as one backfill round embeds by default. */
const EMBEDDER_TEXTS_PER_CALL = 256
/** k of the recalls under load. */
const RECALL_LOAD_K = 8
/** Beyond this PGlite is left out unless asked for: its vector index grows far too slowly (tens of vectors a second). */
const PGLITE_DEFAULT_MAX_SIZE = 10_000

interface Settings {
  stores: Array<'postgres' | 'pglite'>
  sizes: number[]
  pgliteSizes: number[]
  write: boolean
  keep: boolean
  loadSeconds: number
  warmupSeconds: number
  recallQueries: number
  adminUrl?: string
}

const USAGE = `npm run bench -- [--store postgres|pglite|both] [--sizes 10000,100000] [--pglite-sizes 10000] [--quick] [--write] [--keep]

  --store   which store to measure; default both when BENCH_DATABASE_URL is set, else pglite
  --sizes   memories in the queried namespace at which recall is measured (default 10000,100000)
  --pglite-sizes  the same for PGlite (default: those of --sizes up to 10000, because PGlite grows its
            vector index so slowly that indexing 100,000 through the service takes over 20 minutes)
  --quick   a smoke run: sizes 1000,3000 unless given, 2 s per load phase, 30 recall@10 queries
  --write   replace the results section of BENCHMARKS.md
  --keep    leave the benchmark database (or PGlite directory) in place, for inspection

BENCH_DATABASE_URL  a Postgres server (with pgvector) where a throwaway database is created and dropped
EMBEDDING_*         the embedder, as for the service (which inherits them), e.g. EMBEDDING_PROVIDER=local
                    EMBEDDING_MODEL=/path/to/model; its embeddings a second are measured first`

function settingsFrom(argv: string[]): Settings {
  const { values } = parseArgs({
    args: argv,
    options: {
      store: { type: 'string' },
      sizes: { type: 'string' },
      'pglite-sizes': { type: 'string' },
      write: { type: 'boolean', default: false },
      quick: { type: 'boolean', default: false },
      keep: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false }
    }
  })
  if (values.help) {
    console.log(USAGE)
    process.exit(0)
  }
  const adminUrl = process.env.BENCH_DATABASE_URL || undefined
  const store = values.store ?? (adminUrl ? 'both' : 'pglite')
  if (!['postgres', 'pglite', 'both'].includes(store)) throw new Error(`--store must be postgres, pglite or both, not "${store}"`)
  const stores = store === 'both' ? (['postgres', 'pglite'] as const) : [store as 'postgres' | 'pglite']
  if (stores.includes('postgres') && !adminUrl) throw new Error('--store postgres needs BENCH_DATABASE_URL, e.g. postgres://postgres@127.0.0.1:5432/postgres')
  const sizes = parseSizes('--sizes', values.sizes ?? (values.quick ? '1000,3000' : '10000,100000'))
  const smallEnough = sizes.filter((size) => size <= PGLITE_DEFAULT_MAX_SIZE)
  const pgliteSizes = values['pglite-sizes'] ? parseSizes('--pglite-sizes', values['pglite-sizes']) : smallEnough.length > 0 ? smallEnough : sizes.slice(0, 1)
  return {
    stores: [...stores],
    sizes,
    pgliteSizes,
    write: values.write,
    keep: values.keep,
    loadSeconds: values.quick ? 2 : 8,
    warmupSeconds: values.quick ? 1 : 2,
    recallQueries: values.quick ? 30 : 100,
    adminUrl
  }
}

function parseSizes(flag: string, text: string): number[] {
  const sizes = text.split(',').map((s) => Number(s.trim()))
  if (sizes.some((size) => !Number.isInteger(size) || size < 100)) throw new Error(`${flag} takes whole numbers of at least 100, e.g. 10000,100000`)
  return sizes.sort((a, b) => a - b)
}

/** The command as someone would retype it, without any password in the URL or key. */
function commandLine(argv: string[]): string {
  const embedding = Object.entries(process.env)
    .filter(([name, value]) => name.startsWith('EMBEDDING_') && name !== 'EMBEDDING_API_KEY' && value)
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([name, value]) => `${name}=${value} `)
    .join('')
  const env = (process.env.BENCH_DATABASE_URL ? `BENCH_DATABASE_URL=${redactPassword(process.env.BENCH_DATABASE_URL)} ` : '') + embedding
  const args = argv.join(' ')
  if (process.env.npm_lifecycle_event === 'bench') return `${env}npm run bench${args ? ` -- ${args}` : ''}`
  return `${env}node ${relative(process.cwd(), fileURLToPath(import.meta.url))}${args ? ` ${args}` : ''}`
}

function redactPassword(url: string): string {
  try {
    const parsed = new URL(url)
    if (parsed.password) parsed.password = '***'
    return parsed.toString()
  } catch {
    return '(unparsable URL)'
  }
}

function machine(): string {
  const cpu = cpus()
  return `${cpu[0]?.model.trim() ?? 'unknown CPU'}, ${cpu.length} cores, ${Math.round(totalmem() / 2 ** 30)} GiB RAM, ${process.platform}`
}

/** Cores in use on the machine over `seconds`, before the harness starts anything. */
async function machineLoad(seconds: number): Promise<number> {
  const before = machineBusySeconds()
  await new Promise((resolve) => setTimeout(resolve, seconds * 1000))
  return (machineBusySeconds() - before) / seconds
}

const log = (message: string) => console.error(`[bench ${new Date().toISOString().slice(11, 19)}] ${message}`)

/** One autocannon phase with the service's resource use alongside. */
async function phase(service: SageProcess, store: Store, name: string, options: Omit<LoadOptions, 'url'>): Promise<Phase> {
  const finish = await watchUsage(service.url, () => store.backendPids())
  const load = await runLoad({ ...options, url: service.url })
  const usage = await finish()
  const failed = load.failures > 0 ? `, ${load.failures} FAILED (${load.firstFailure ?? JSON.stringify(load.statusCodes)})` : ''
  log(`${name}: ${Math.round(load.requestsPerSecond)} req/s, p50 ${load.p50.toFixed(2)} ms, p99 ${load.p99.toFixed(2)} ms${failed}`)
  return { load, usage }
}

interface Store {
  kind: 'postgres' | 'pglite'
  /** Describes the server, known once it has been reached. */
  server: string
  start(): Promise<SageProcess>
  /** The database processes serving the service, whose CPU a phase reports. */
  backendPids(): Promise<number[]>
  /** Called after each fill, once the vector backlog is empty, with the service still running. */
  afterFill(): Promise<void>
  /** Replaces the store with a fresh, empty one; the service must be stopped. */
  renew(): Promise<void>
  /** Exact search and counts; `service` may be stopped and restarted to reach the store. */
  exact(service: SageProcess, answers: Awaited<ReturnType<typeof askService>>): Promise<{ recallAtK: RecallAtK; total: number; main: number; service: SageProcess }>
  close(): Promise<void>
}

async function openPostgres(settings: Settings, workDir: string, embedder: Embedder): Promise<Store> {
  let database: BenchDatabase = await createBenchDatabase(settings.adminUrl!)
  log(`created database ${database.name}`)
  let client = new pg.Client({ connectionString: database.url })
  await client.connect()
  const sql: SqlClient = { query: (text, params) => client.query(text, params) }
  const store: Store = {
    kind: 'postgres',
    server: `PostgreSQL ${database.serverVersion}`,
    start: () => startService({ databaseUrl: database.url, dataDir: workDir, logFile: join(workDir, 'service-postgres.log') }),
    async backendPids() {
      const { rows } = await client.query<{ pid: number }>('SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()')
      return rows.map((row) => row.pid)
    },
    async afterFill() {
      if (!store.server.includes('pgvector')) {
        const { rows } = await client.query<{ vector: string; shared_buffers: string; autovacuum: string; synchronous_commit: string }>(
          `SELECT (SELECT extversion FROM pg_extension WHERE extname = 'vector') AS vector, current_setting('shared_buffers') AS shared_buffers,
                  current_setting('autovacuum') AS autovacuum, current_setting('synchronous_commit') AS synchronous_commit`
        )
        const settings = rows[0]
        store.server = `PostgreSQL ${database.serverVersion}, pgvector ${settings?.vector}, shared_buffers ${settings?.shared_buffers}, ` +
          `autovacuum ${settings?.autovacuum}, synchronous_commit ${settings?.synchronous_commit}`
      }
      // What autovacuum would have done within a minute of a bulk load (and the only way when it is off): fresh row
      // counts for the planner, for the vector tables too (the service itself analyzes only memories, at start).
      await client.query('ANALYZE memories, memory_vectors, vector_backlog')
    },
    async renew() {
      await client.end()
      await database.drop()
      database = await createBenchDatabase(settings.adminUrl!)
      log(`created database ${database.name}`)
      client = new pg.Client({ connectionString: database.url })
      await client.connect()
    },
    async exact(service, answers) {
      const recallAtK = await compareWithExact(sql, MAIN_NAMESPACE, answers, RECALL_K, { graphAlone: true, embedder })
      const counts = await countRows(sql)
      return { recallAtK, ...counts, service }
    },
    async close() {
      await client.end()
      if (settings.keep) log(`kept database ${database.name}`)
      else await database.drop()
    }
  }
  return store
}

async function openPglite(settings: Settings, workDir: string, embedder: Embedder): Promise<Store> {
  let dataDir = join(workDir, 'pglite-data')
  // Creating a cluster takes seconds of CPU, which on a busy machine outlasts Fastify's 10 s plugin timeout and
  // stops the service's first start; the harness creates it beforehand, as an earlier start would have.
  const createCluster = async () => {
    await mkdir(join(dataDir, 'pglite'), { recursive: true })
    await (await PGlite.create(join(dataDir, 'pglite'), { extensions: { vector } })).close()
  }
  await createCluster()
  const start = () => startService({ dataDir, logFile: join(workDir, 'service-pglite.log') })
  const store: Store = {
    kind: 'pglite',
    server: 'PGlite',
    start,
    backendPids: async () => [],
    async afterFill() {},
    async renew() {
      await rm(dataDir, { recursive: true, force: true })
      dataDir = join(workDir, 'pglite-data-fills')
      await createCluster()
    },
    // PGlite is one process's store: stop the service, open its files here, search, close, start it again.
    async exact(service, answers) {
      await service.stop()
      const db = await PGlite.create(join(dataDir, 'pglite'), { extensions: { vector } })
      let measured: { recallAtK: RecallAtK; total: number; main: number }
      try {
        const { rows } = await db.query<{ version: string; vector: string }>(
          "SELECT split_part(version(), ' ', 2) AS version, (SELECT extversion FROM pg_extension WHERE extname = 'vector') AS vector"
        )
        store.server = `PGlite (PostgreSQL ${rows[0]?.version} in WebAssembly), pgvector ${rows[0]?.vector}`
        const sql: SqlClient = { query: (text, params) => db.query(text, params) }
        measured = { recallAtK: await compareWithExact(sql, MAIN_NAMESPACE, answers, RECALL_K, { graphAlone: true, embedder }), ...(await countRows(sql)) }
      } finally {
        await db.close()
      }
      return { ...measured, service: await start() }
    },
    async close() {
      if (settings.keep) log(`kept PGlite data in ${dataDir}`)
    }
  }
  return store
}

async function countRows(sql: SqlClient): Promise<{ total: number; main: number }> {
  const { rows } = await sql.query(
    'SELECT count(*)::int AS total, count(*) FILTER (WHERE namespace = $1)::int AS main FROM memories',
    [MAIN_NAMESPACE]
  )
  const row = rows[0] as { total: number; main: number }
  return { total: row.total, main: row.main }
}

const saveBody = (workload: Workload) => () => workload.item(SAVE_NAMESPACE)
/** Claude Code's UserPromptSubmit, from a project whose folder names the queried namespace (no repository there). */
/** sage_hook_requests_total for UserPromptSubmit, by outcome (context, empty, deadline, error, …). */
async function hookOutcomes(url: string): Promise<Record<string, number>> {
  const text = await (await fetch(`${url}/metrics`)).text()
  const outcomes: Record<string, number> = {}
  for (const match of text.matchAll(/^sage_hook_requests_total\{event="UserPromptSubmit",outcome="([a-z]+)"\} (\d+)/gm)) {
    outcomes[match[1] as string] = Number(match[2])
  }
  return outcomes
}
const recallBody = (workload: Workload, mode: string) => () => ({ query: workload.query(), namespace: MAIN_NAMESPACE, mode, k: RECALL_LOAD_K })
/** Filtered recalls asked again after their phase, to count what each returned. */
const COUNTED_RECALLS = 20

/** The fewest and the mean results of COUNTED_RECALLS recalls made by `body`. */
async function resultCounts(url: string, body: () => Record<string, unknown>): Promise<{ min: number; mean: number; k: number }> {
  const counts: number[] = []
  for (let i = 0; i < COUNTED_RECALLS; i++) {
    const response = await fetch(`${url}/v1/recall`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body()) })
    const answer = (await response.json()) as { results?: unknown[] }
    if (response.status !== 200 || !answer.results) throw new Error(`a filtered recall answered ${response.status} ${JSON.stringify(answer).slice(0, 300)}`)
    counts.push(answer.results.length)
  }
  return { min: Math.min(...counts), mean: counts.reduce((a, b) => a + b, 0) / counts.length, k: RECALL_LOAD_K }
}

async function measureStore(store: Store, settings: Settings): Promise<Omit<StoreResult, 'busyBefore' | 'notes'>> {
  const started = performance.now()
  const workload = createWorkload(42)
  let service = await store.start()
  log(`${store.kind}: service pid ${service.child.pid} at ${service.url}`)
  try {
    const seconds = settings.loadSeconds
    const writesStart = await readIndexer(service.url)
    await runLoad({ url: service.url, path: '/v1/memories', connections: 1, seconds: settings.warmupSeconds, body: saveBody(workload) })
    const saveLatency = await phase(service, store, 'save c=1', { path: '/v1/memories', connections: 1, seconds, body: saveBody(workload) })
    const singleThroughput = await phase(service, store, `save c=${SINGLE_CONNECTIONS}`, { path: '/v1/memories', connections: SINGLE_CONNECTIONS, seconds, body: saveBody(workload) })
    // A batch can take seconds: a fixed count, sized from one timed batch, lets every one finish inside the phase.
    const oneBatch = await fill(service.url, workload, [{ namespace: BATCH_NAMESPACE, count: BATCH_SIZE }], { batchSize: BATCH_SIZE, concurrency: 1 })
    const batches = Math.min(2_000, Math.max(2 * BATCH_CONNECTIONS, Math.round(seconds / oneBatch.seconds)))
    // Made before the phase: writing 500 memories and their JSON took the harness about 30 ms a batch on the
    // cores the service and Postgres use, and each connection waited for it between batches (7,050 items/s
    // against 8,290 with the bodies ready, same service; both read before load.ts stopped rounding the phase's
    // duration up to whole seconds).
    const batchBodies = Array.from({ length: batches }, () => JSON.stringify({ items: Array.from({ length: BATCH_SIZE }, () => workload.item(BATCH_NAMESPACE)) }))
    let nextBatch = 0
    const batchBody = () => batchBodies[nextBatch++ % batchBodies.length]
    const batchThroughput = await phase(service, store, `batch of ${BATCH_SIZE} c=${BATCH_CONNECTIONS}`, {
      path: '/v1/memories/batch',
      connections: BATCH_CONNECTIONS,
      seconds,
      amount: batches,
      // Batches queue behind each other in PGlite; the service's own 30 s request timeout still applies.
      timeoutSeconds: 120,
      itemsPerRequest: BATCH_SIZE,
      body: batchBody
    })
    // Saves are ingested at once and indexed into the graph in the background: let the indexer catch up before
    // the fill, so that each phase starts on a quiet service.
    const writesEnd = await readIndexer(service.url)
    const writesDrained = await waitForEmptyBacklog(service.url, { since: writesEnd, label: 'after the write phases', log })
    const writeDrain = {
      secondsAfter: writesDrained.seconds,
      vectorsAfter: writesDrained.indexed,
      vectorsTotal: writesDrained.indexed + writesEnd.indexed - writesStart.indexed
    }
    log(`vector backlog empty ${writeDrain.secondsAfter.toFixed(1)} s after the write phases ended: ${writeDrain.vectorsAfter} vectors indexed since, ` +
      `${writeDrain.vectorsTotal} since they began`)
    // The fills start on a fresh store: the write phases run for a set time, so the faster they are, the more they
    // would leave in the graph that recall is measured on, and runs would not compare.
    await service.stop()
    await store.renew()
    service = await store.start()
    log(`${store.kind}: a fresh store for the fills, service pid ${service.child.pid}`)

    const sizes: SizeResult[] = []
    let filledMain = 0
    let filledOthers = 0
    for (const size of store.kind === 'pglite' ? settings.pgliteSizes : settings.sizes) {
      const othersTarget = Math.round(size * OTHER_SHARE)
      const perOther = Math.ceil((othersTarget - filledOthers) / OTHER_NAMESPACES.length)
      const plan: FillPlan[] = [{ namespace: MAIN_NAMESPACE, count: size - filledMain }, ...OTHER_NAMESPACES.map((namespace) => ({ namespace, count: perOther }))]
      log(`filling to ${size.toLocaleString('en-US')} memories in ${MAIN_NAMESPACE}`)
      const fillStart = await readIndexer(service.url)
      const filled = await fill(service.url, workload, plan, { batchSize: FILL_BATCH_SIZE, concurrency: FILL_CONCURRENCY })
      filledMain = size
      filledOthers += perOther * OTHER_NAMESPACES.length
      log(`filled ${filled.items} in ${filled.seconds.toFixed(1)} s: ${Math.round(filled.itemsPerSecond)} items/s ingested`)
      const fillDrained = await waitForEmptyBacklog(service.url, { since: fillStart, label: `indexing the fill to ${size}`, log })
      const indexing = { vectors: fillDrained.indexed, seconds: fillDrained.seconds, vectorsPerSecond: fillDrained.indexed / fillDrained.seconds }
      log(`indexed ${indexing.vectors} vectors into the graph ${indexing.seconds.toFixed(1)} s after the fill began: ${Math.round(indexing.vectorsPerSecond)} vectors/s`)
      await store.afterFill()

      const save = await phase(service, store, `save c=1 at ${size}`, { path: '/v1/memories', connections: 1, seconds, body: saveBody(workload) })
      // Those saves too, so that recall is measured on a quiet service, as it was when saves grew the graph themselves.
      const savesDrained = await waitForEmptyBacklog(service.url, { since: await readIndexer(service.url), label: `after save c=1 at ${size}`, log })
      log(`vector backlog empty ${savesDrained.seconds.toFixed(1)} s after save c=1 at ${size}: ${savesDrained.indexed} vectors indexed since`)
      await runLoad({ url: service.url, path: '/v1/recall', connections: RECALL_CONNECTIONS, seconds: settings.warmupSeconds, body: recallBody(workload, 'hybrid') })
      const recall = {} as SizeResult['recall']
      for (const mode of RECALL_MODES) {
        recall[mode] = await phase(service, store, `recall ${mode} at ${size}`, { path: '/v1/recall', connections: RECALL_CONNECTIONS, seconds, body: recallBody(workload, mode) })
      }

      const { filters, matching } = workload.recallFilters(MAIN_NAMESPACE)
      const filtered: SizeResult['filtered'] = []
      for (const [name, filter] of Object.entries(filters)) {
        const body = () => ({ ...recallBody(workload, 'hybrid')(), filter })
        const load = await phase(service, store, `recall hybrid, ${name}, at ${size}`, { path: '/v1/recall', connections: RECALL_CONNECTIONS, seconds, body })
        filtered.push({ name, matching: matching[name] ?? 0, ...load, results: await resultCounts(service.url, body) })
      }

      const answers = await askService(service.url, MAIN_NAMESPACE, Array.from({ length: settings.recallQueries }, () => workload.query()), RECALL_K)
      const exact = await store.exact(service, answers)
      service = exact.service
      if (exact.main !== size) throw new Error(`${MAIN_NAMESPACE} holds ${exact.main} memories, expected ${size}`)
      const graph = exact.recallAtK.graphAlone
      const graphText = graph === undefined ? '' : 'skipped' in graph ? `, graph alone not measured (${graph.skipped})`
        : `, graph alone ${graph.recall.toFixed(3)} (${graph.perfect}/${exact.recallAtK.queries} complete, ${graph.ms.toFixed(1)} ms a query${graph.forced ? `, with ${graph.forced.settings}; the planner's own plan was ${graph.forced.plannersOwn}` : ''})`
      log(`recall@${RECALL_K} at ${size}: served ${exact.recallAtK.recall.toFixed(3)} (${exact.recallAtK.perfect}/${exact.recallAtK.queries} complete)${graphText}; ` +
        `exact search ${exact.recallAtK.exactMs.toFixed(1)} ms a query; store holds ${exact.total}`)

      // Last, since its prompts are saved in the queried namespace: they leave with their session afterwards.
      const hookSession = `bench-hook-${size}`
      const hookOutcomesBefore = await hookOutcomes(service.url)
      const hook = await phase(service, store, `hook UserPromptSubmit at ${size}`, { path: '/hooks/claude-code', connections: 1, seconds, body: userPromptSubmits(workload, MAIN_NAMESPACE, hookSession) })
      const hookOutcomesAfter = await hookOutcomes(service.url)
      const outcomes = Object.fromEntries(Object.entries(hookOutcomesAfter).map(([outcome, n]) => [outcome, n - (hookOutcomesBefore[outcome] ?? 0)]))
      log(`hook answers at ${size}: ${Object.entries(outcomes).filter(([, n]) => n > 0).map(([outcome, n]) => `${n} ${outcome}`).join(', ')}`)
      const removed = await fetch(`${service.url}/v1/memories?namespace=${MAIN_NAMESPACE}&session_id=${hookSession}`, { method: 'DELETE' })
      if (removed.status !== 200) throw new Error(`deleting the hook phase's prompts answered ${removed.status} ${(await removed.text()).slice(0, 300)}`)
      sizes.push({ size, storeTotal: exact.total, fill: filled, indexing, save, recall, filtered, recallAtK: exact.recallAtK, hook: { ...hook, outcomes } })
    }
    return {
      store: store.kind,
      server: store.server,
      saveLatency,
      singleThroughput,
      batchThroughput,
      batchSize: BATCH_SIZE,
      writeDrain,
      sizes,
      seconds: (performance.now() - started) / 1000
    }
  } finally {
    await service.stop()
  }
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2)
  const settings = settingsFrom(argv)
  const workDir = await mkdtemp(join(tmpdir(), 'sage-bench-'))
  const cleanups: Array<() => Promise<void>> = []
  const cleanUp = async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch((error: Error) => log(`cleanup: ${error.message}`))
  }
  const interrupted = () => {
    log('interrupted: stopping the service and removing the benchmark store')
    void cleanUp().finally(() => process.exit(130))
  }
  process.once('SIGINT', interrupted)
  process.once('SIGTERM', interrupted)
  if (!settings.keep) cleanups.push(() => rm(workDir, { recursive: true, force: true }))

  // The service's embedder, from the same environment: recall@k embeds the queries with it, and it is timed first.
  const embedder = await createEmbedder(loadConfig())
  cleanups.push(async () => embedder.close?.())
  const throughputWorkload = createWorkload(7)
  const throughput = await measureEmbedder(embedder, Array.from({ length: 2_000 }, () => throughputWorkload.text()), {
    seconds: settings.loadSeconds,
    textsPerCall: EMBEDDER_TEXTS_PER_CALL
  })
  log(`embedder ${describeThroughput(throughput)}`)

  const info: RunInfo = {
    date: new Date().toISOString().slice(0, 10),
    embedder: describeThroughput(throughput),
    command: commandLine(argv),
    machine: machine(),
    cores: cpus().length,
    node: process.version,
    recallConnections: RECALL_CONNECTIONS,
    loadSeconds: settings.loadSeconds
  }
  const sections: StoreSection[] = []
  const failed: StoreSection[] = []
  try {
    for (const kind of settings.stores) {
      // One store failing still leaves the other's figures worth printing.
      try {
        const busyBefore = await machineLoad(3)
        if (busyBefore > 0.25) log(`warning: other programs keep ${busyBefore.toFixed(2)} cores busy; ${kind} figures will be pessimistic`)
        const store = kind === 'postgres' ? await openPostgres(settings, workDir, embedder) : await openPglite(settings, workDir, embedder)
        cleanups.push(() => store.close())
        const result = await measureStore(store, settings)
        await cleanups.pop()?.()
        sections.push(...renderResults([{ ...result, busyBefore, notes: storeNotes(kind, settings) }], info))
      } catch (error) {
        failed.push(renderFailure(kind, (error as Error).message, info))
        log(`${kind} failed: ${(error as Error).message}`)
      }
    }
  } finally {
    await cleanUp()
  }

  console.log([...sections, ...failed].map((section) => section.text).join('\n\n'))
  if (failed.length > 0) process.exitCode = 1
  if (settings.write && sections.length > 0) {
    const root = fileURLToPath(new URL(import.meta.url.includes('/dist/bench/') ? '../../' : '../', import.meta.url))
    // A failed store keeps the figures it had: its error is printed above, not written.
    await writeResults(join(root, 'BENCHMARKS.md'), sections)
    log(`wrote ${sections.map((section) => section.store).join(' and ')} to ${join(root, 'BENCHMARKS.md')}`)
  }
}

function storeNotes(kind: 'postgres' | 'pglite', settings: Settings): string[] {
  const skipped = settings.sizes.filter((size) => !settings.pgliteSizes.includes(size))
  if (kind !== 'pglite' || skipped.length === 0) return []
  const list = (sizes: number[]) => sizes.map((size) => size.toLocaleString('en-US')).join(' and ')
  return [
    `Measured at ${list(settings.pgliteSizes)} memories only: PGlite grows its vector index so slowly (see the indexing rate) that ` +
      `indexing ${list(skipped)} through the service would take over 20 minutes; \`--pglite-sizes\` asks for it anyway.`
  ]
}

main().catch((error: Error) => {
  console.error(`bench: ${error.message}`)
  process.exitCode = 1
})
