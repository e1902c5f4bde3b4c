import { readFile, writeFile } from 'node:fs/promises'
import type { FillResult } from './fill.js'
import type { LoadResult } from './load.js'
import type { RecallAtK } from './recall-at-k.js'
import type { Usage } from './usage.js'

export const RECALL_MODES = ['hybrid', 'vector', 'text'] as const
export type RecallModeName = (typeof RECALL_MODES)[number]

export interface Phase {
  load: LoadResult
  usage: Usage
}

export interface SizeResult {
  /** Memories in the namespace that is queried. */
  size: number
  /** Memories in the whole store at that point, every namespace included. */
  storeTotal: number
  /** Ingest: memories the fill saved, acknowledged and searchable, per second. */
  fill: FillResult
  /** The vector indexer's part: from the fill's start until the backlog was empty. */
  indexing: Indexing
  save: Phase
  recall: Record<RecallModeName, Phase>
  /** Hybrid recalls under each filter: how many memories it lets through, and how many results recalls returned. */
  filtered: Array<Phase & { name: string; matching: number; results: { min: number; mean: number; k: number } }>
  recallAtK: RecallAtK | { skipped: string }
  /** POST /hooks/claude-code with UserPromptSubmit (save the prompt, recall, answer), and how the hook answered. */
  hook: Phase & { outcomes: Record<string, number> }
}

/** Vectors the background indexer moved into the HNSW graph, and how long from the start of the writes until it was done. */
export interface Indexing {
  vectors: number
  seconds: number
  vectorsPerSecond: number
}

/** The backlog the write phases left behind, and how the indexer caught up once they ended. */
export interface WriteDrain {
  /** From the end of the last write phase until the backlog was empty. */
  secondsAfter: number
  /** Vectors indexed in that time: what was left when the writes ended. */
  vectorsAfter: number
  /** Vectors indexed from the start of the write phases until the backlog was empty. */
  vectorsTotal: number
}

export interface StoreResult {
  store: 'postgres' | 'pglite'
  /** e.g. "PostgreSQL 15.20, shared_buffers 128MB", or the PGlite version. */
  server: string
  saveLatency: Phase
  singleThroughput: Phase
  batchThroughput: Phase
  batchSize: number
  writeDrain: WriteDrain
  sizes: SizeResult[]
  seconds: number
  /** Cores other programs kept busy just before this store's run. */
  busyBefore: number
  /** What the reader needs to know about this store's run (sizes left out, …). */
  notes: string[]
}

export interface RunInfo {
  date: string
  /** The embedder and its embeddings a second, measured alone before the stores. */
  embedder: string
  command: string
  machine: string
  cores: number
  node: string
  recallConnections: number
  loadSeconds: number
}

export interface StoreSection {
  store: 'postgres' | 'pglite'
  text: string
}

export const TARGETS = {
  saveP50Ms: 5,
  singleSavesPerSecond: 1_500,
  batchItemsPerSecond: 10_000,
  recallP50Ms: 10,
  recallP99Ms: 30,
  recallAtK: 0.95,
  hookP50Ms: 15,
  hookP99Ms: 50,
  /** The size at which the recall latency targets apply. */
  recallTargetSize: 100_000
}

export const BEGIN_MARKER = '<!-- bench:begin -->'
export const END_MARKER = '<!-- bench:end -->'
const storeBegin = (store: string) => `<!-- bench:${store}:begin -->`
const storeEnd = (store: string) => `<!-- bench:${store}:end -->`
const storeTitle = (store: string) => (store === 'postgres' ? 'Postgres' : 'PGlite (embedded)')

const ms = (value: number) => (Number.isFinite(value) ? (value < 10 ? value.toFixed(2) : value.toFixed(1)) : '–')
const count = (value: number) => Math.round(value).toLocaleString('en-US')
const cores = (value: number) => value.toFixed(2)
const secs = (value: number) => (value < 100 ? value.toFixed(1) : Math.round(value).toString())
const p50p99 = (load: LoadResult) => `${ms(load.p50)} / ${ms(load.p99)}`
const verdict = (ok: boolean, applies: boolean) => (applies ? (ok ? ' ✅' : ' ❌') : '')

function serverMs(usage: Usage, route: string): number {
  return usage.serverMs[route] ?? usage.serverMs[`${route}/`] ?? Number.NaN
}

function failures(load: LoadResult): string {
  if (load.failures === 0) return ''
  return ` (**${count(load.failures)} failed**: ${JSON.stringify(load.statusCodes)}${load.firstFailure ? `, e.g. ${load.firstFailure.replace(/\|/g, '\\|').replace(/\n/g, ' ')}` : ''})`
}

function storeSection(result: StoreResult, info: RunInfo): string {
  const judged = result.store === 'postgres'
  const lines: string[] = []
  lines.push(`### ${storeTitle(result.store)}: ${result.server}`)
  lines.push('')
  lines.push(...measuredWith(info), '')
  const busy = `Other programs kept ${result.busyBefore.toFixed(2)} of the ${info.cores} cores busy just before this run` +
    (result.busyBefore > 0.25 ? ': **the machine was not idle, so these figures are pessimistic** (see "other CPU" below).' : ' (idle).')
  lines.push(busy, '')
  for (const note of result.notes) lines.push(note, '')
  if (!judged) lines.push('The targets are for real Postgres; PGlite is measured for comparison and not judged against them.\n')
  lines.push('Writes, on an empty store:')
  lines.push('')
  lines.push('| measure | concurrency | result | p50 / p99 ms | target |')
  lines.push('|---|---:|---:|---:|---|')
  const save = result.saveLatency.load
  lines.push(`| save latency, \`POST /v1/memories\` | 1 | ${count(save.requestsPerSecond)} saves/s${failures(save)} | ${p50p99(save)} | p50 ≤ ${TARGETS.saveP50Ms} ms${verdict(save.p50 <= TARGETS.saveP50Ms, judged)} |`)
  const single = result.singleThroughput.load
  lines.push(`| single saves per second | ${single.connections} | **${count(single.requestsPerSecond)} saves/s**${failures(single)} | ${p50p99(single)} | ≥ ${count(TARGETS.singleSavesPerSecond)}/s${verdict(single.requestsPerSecond >= TARGETS.singleSavesPerSecond, judged)} |`)
  const batch = result.batchThroughput.load
  lines.push(`| batched items per second, ${result.batchSize} a batch | ${batch.connections} | **${count(batch.itemsPerSecond)} items/s**${failures(batch)} | ${p50p99(batch)} | ≥ ${count(TARGETS.batchItemsPerSecond)}/s${verdict(batch.itemsPerSecond >= TARGETS.batchItemsPerSecond, judged)} |`)
  lines.push('')
  const drain = result.writeDrain
  lines.push('These are ingest figures: a save is durable and acknowledged, and searchable at once, since recall searches the ' +
    'vectors not yet in the HNSW graph (the backlog) exactly. ' +
    (drain.vectorsAfter > 0
      ? `When these phases ended, the background indexer had ${count(drain.vectorsAfter)} of their ${count(drain.vectorsTotal)} vectors still to move into the graph, ` +
        `which took it another **${secs(drain.secondsAfter)} s** (${count(drain.vectorsAfter / Math.max(drain.secondsAfter, 1e-3))} vectors/s).`
      : `The background indexer kept up: all ${count(drain.vectorsTotal)} of their vectors were in the graph when they ended.`))
  lines.push('')
  lines.push(`By size (recall at concurrency ${info.recallConnections}, k = 8; latencies p50 / p99 in ms, measured by the client; ` +
    'recall@10 of `mode: "vector"` as the service serves it, and of the HNSW graph alone):')
  lines.push('')
  lines.push('| memories in namespace (store) | fill, items/s | indexed into the graph, vectors/s | save p50 / p99 | hybrid | vector | text | recall@10 vs exact, served | graph alone |')
  lines.push('|---|---:|---:|---:|---:|---:|---:|---:|---:|')
  for (const size of result.sizes) {
    const atTarget = judged && size.size >= TARGETS.recallTargetSize
    const recall = (mode: RecallModeName) => {
      const load = size.recall[mode].load
      return `${p50p99(load)}${verdict(load.p50 <= TARGETS.recallP50Ms && load.p99 <= TARGETS.recallP99Ms, atTarget)}${failures(load)}`
    }
    const recallAtK = 'skipped' in size.recallAtK
      ? `not measured: ${size.recallAtK.skipped}`
      : `**${size.recallAtK.recall.toFixed(3)}** (${size.recallAtK.perfect}/${size.recallAtK.queries} complete)${verdict(size.recallAtK.recall >= TARGETS.recallAtK, judged)}`
    const graph = 'skipped' in size.recallAtK ? undefined : size.recallAtK.graphAlone
    const graphAlone = graph === undefined ? '–'
      : 'skipped' in graph ? `not measured: ${graph.skipped}`
      : `**${graph.recall.toFixed(3)}** (${graph.perfect}/${(size.recallAtK as RecallAtK).queries} complete${graph.forced ? `; ${graph.forced.settings}` : ''})${verdict(graph.recall >= TARGETS.recallAtK, judged)}`
    lines.push(`| ${count(size.size)} (${count(size.storeTotal)}) | ${count(size.fill.itemsPerSecond)} | ${count(size.indexing.vectorsPerSecond)} | ` +
      `${p50p99(size.save.load)}${failures(size.save.load)} | ${recall('hybrid')} | ${recall('vector')} | ${recall('text')} | ${recallAtK} | ${graphAlone} |`)
  }
  lines.push('')
  lines.push(`Filtered recall (hybrid, k = 8, concurrency ${info.recallConnections}; p50 / p99 in ms; results: the fewest and the mean of 20 recalls asked after the phase): ` +
    `target p50 ≤ ${TARGETS.recallP50Ms} ms at ${count(TARGETS.recallTargetSize)} for every filter, and k results whenever k memories match.`)
  lines.push('')
  lines.push('| memories in namespace | filter | memories it lets through | p50 / p99 | results |')
  lines.push('|---|---|---:|---:|---:|')
  for (const size of result.sizes) {
    const atTarget = judged && size.size >= TARGETS.recallTargetSize
    for (const filtered of size.filtered ?? []) {
      const full = filtered.results.min >= Math.min(filtered.results.k, filtered.matching)
      lines.push(`| ${count(size.size)} | ${filtered.name} | ${count(filtered.matching)} | ${p50p99(filtered.load)}${verdict(filtered.load.p50 <= TARGETS.recallP50Ms, atTarget)}${failures(filtered.load)} | ` +
        `${filtered.results.min} / ${filtered.results.mean.toFixed(1)}${verdict(full, judged)} |`)
    }
  }
  lines.push('')
  lines.push(`Claude Code's \`UserPromptSubmit\` hook, \`POST /hooks/claude-code\` at concurrency 1 (save the prompt, recall hybrid, answer with the context): ` +
    `target p50 ≤ ${TARGETS.hookP50Ms} ms, p99 ≤ ${TARGETS.hookP99Ms} ms at ${count(TARGETS.recallTargetSize)}.`)
  lines.push('')
  lines.push('| memories in namespace | hook p50 / p99 ms | answers |')
  lines.push('|---|---:|---|')
  for (const size of result.sizes) {
    const load = size.hook.load
    const atTarget = judged && size.size >= TARGETS.recallTargetSize
    const answers = Object.entries(size.hook.outcomes).filter(([, n]) => n > 0).map(([outcome, n]) => `${count(n)} ${outcome}`).join(', ')
    lines.push(`| ${count(size.size)} | ${p50p99(load)}${verdict(load.p50 <= TARGETS.hookP50Ms && load.p99 <= TARGETS.hookP99Ms, atTarget)}${failures(load)} | ${answers} |`)
  }
  lines.push('')
  lines.push('Indexing, from the start of each fill until the backlog was empty: ' + result.sizes.map((size) =>
    `${count(size.indexing.vectors)} vectors in ${secs(size.indexing.seconds)} s at ${count(size.size)} (the fill itself took ${secs(size.fill.seconds)} s)`).join('; ') + '.')
  lines.push('')
  lines.push('Where the time went: the service\'s own mean per request and per embedder call (from its `/metrics`), and CPU by process, ' +
    `in cores (this machine has ${info.cores}): the service${judged ? '' : ' (with the store inside it)'}, ` +
    `${judged ? 'the Postgres backends serving it, ' : ''}the harness, and anything else running on the machine.`)
  lines.push('')
  lines.push(`| phase | client p50 ms | service mean ms | embedder ms / call | service CPU |${judged ? ' Postgres CPU |' : ''} harness CPU | other CPU |`)
  lines.push(`|---|---:|---:|---:|---:|${judged ? '---:|' : ''}---:|---:|`)
  const row = (name: string, phase: Phase, route: string) => {
    const usage = phase.usage
    const database = judged ? ` ${cores(usage.databaseCores)} |` : ''
    lines.push(`| ${name} | ${ms(phase.load.p50)} | ${ms(serverMs(usage, route))} | ${ms(usage.embedMs)} | ${cores(usage.serviceCores)} |${database} ${cores(usage.benchCores)} | ${cores(usage.otherCores)} |`)
  }
  row('save, c=1, empty store', result.saveLatency, '/v1/memories')
  row(`save, c=${single.connections}, empty store`, result.singleThroughput, '/v1/memories')
  row(`batch of ${result.batchSize}, c=${batch.connections}`, result.batchThroughput, '/v1/memories/batch')
  for (const size of result.sizes) {
    row(`save, c=1, at ${count(size.size)}`, size.save, '/v1/memories')
    for (const mode of RECALL_MODES) row(`recall ${mode}, at ${count(size.size)}`, size.recall[mode], '/v1/recall')
    for (const filtered of size.filtered ?? []) row(`recall hybrid, ${filtered.name}, at ${count(size.size)}`, filtered, '/v1/recall')
    row(`hook UserPromptSubmit, at ${count(size.size)}`, size.hook, '/hooks/claude-code')
  }
  lines.push('')
  const cached = [result.saveLatency, result.singleThroughput, result.batchThroughput, ...result.sizes.flatMap((size) => [size.save, ...Object.values(size.recall), ...(size.filtered ?? [])])]
    .reduce((sum, phase) => sum + phase.usage.recallCacheHits, 0)
  if (cached > 0) lines.push(`**${count(cached)} recalls were answered from the service's cache**, so the recall figures above are not all real searches.\n`)
  const exact = result.sizes.filter((size) => !('skipped' in size.recallAtK))
  if (exact.length > 0) {
    const graphed = exact.filter((size) => { const graph = (size.recallAtK as RecallAtK).graphAlone; return graph !== undefined && !('skipped' in graph) })
    const graphMs = graphed.length === 0 ? ''
      : '; the HNSW graph alone (the "graph alone" query) took ' + graphed.map((size) => `${ms(((size.recallAtK as RecallAtK).graphAlone as { ms: number }).ms)} ms at ${count(size.size)}`).join(', ')
    lines.push('An exact (sequential) vector search took ' + exact.map((size) => `${ms((size.recallAtK as RecallAtK).exactMs)} ms at ${count(size.size)}`).join(', ') + `${graphMs}, measured directly in the store.`)
    lines.push('')
  }
  lines.push(`This store's run took ${Math.round(result.seconds)} s.`)
  return lines.join('\n')
}

function measuredWith(info: RunInfo): string[] {
  return [
    `Measured ${info.date} on ${info.machine}, Node ${info.node}, ${info.loadSeconds} s a load phase, embedder ${info.embedder}, with:`,
    '',
    '```',
    info.command,
    '```'
  ]
}

/** One self-contained section per store (so a run of one store can replace its own figures alone). */
export function renderResults(results: readonly StoreResult[], info: RunInfo): StoreSection[] {
  return results.map((result) => ({ store: result.store, text: storeSection(result, info) }))
}

/** What a store's failed run prints instead of figures. */
export function renderFailure(store: 'postgres' | 'pglite', message: string, info: RunInfo): StoreSection {
  return { store, text: [`### ${storeTitle(store)}: not measured, the run failed`, '', ...measuredWith(info), '', '```', message.trim(), '```'].join('\n') }
}

/**
 * Replaces each store's section inside the results block of `file` (between its own markers), keeping every other
 * section and the rest of the file; a store without a section yet gets one at the end of the block.
 */
export async function writeResults(file: string, sections: readonly StoreSection[]): Promise<void> {
  let text = await readFile(file, 'utf8').catch(() => '')
  if (!text.includes(BEGIN_MARKER) || !text.includes(END_MARKER)) text = `${text.trimEnd()}\n\n${BEGIN_MARKER}\n${END_MARKER}\n`
  for (const { store, text: body } of sections) {
    const section = `${storeBegin(store)}\n${body.trim()}\n${storeEnd(store)}`
    const begin = text.indexOf(storeBegin(store))
    const end = text.indexOf(storeEnd(store))
    if (begin !== -1 && end > begin) {
      text = text.slice(0, begin) + section + text.slice(end + storeEnd(store).length)
    } else {
      // The first figures replace the placeholder; later stores go after those already there.
      const blockStart = text.indexOf(BEGIN_MARKER) + BEGIN_MARKER.length
      const blockEnd = text.indexOf(END_MARKER)
      const inside = text.slice(blockStart, blockEnd)
      const kept = inside.includes('<!-- bench:') ? `${inside.trim()}\n\n` : ''
      text = `${text.slice(0, blockStart)}\n${kept}${section}\n${text.slice(blockEnd)}`
    }
  }
  await writeFile(file, text)
}
