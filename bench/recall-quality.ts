// `npm run bench:recall`: how often recall finds the right memory (see BENCHMARKS.md, "Recall quality").
import { cpus, totalmem } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import type { FastifyInstance } from 'fastify'
import { buildApp } from '../src/app.js'
import { embeddingProvider, loadConfig, type Config } from '../src/config.js'
import { REPO_ROOT } from '../test/helper.js'
import { startEmbeddingServer, type EmbeddingServer } from '../test/support/embedding-server.js'
import { createBenchDatabase, type BenchDatabase } from './bench-database.js'
import { fts5Baseline } from './fts5-baseline.js'
import { measure, readLabelledSet, CUTOFFS, type LabelledSet, type RecallFigures, type Retriever } from './labelled-set.js'
import { loadLocomo } from './locomo.js'

const USAGE = `npm run bench:recall -- [--sets locomo,project,hook] [--modes hybrid,text,vector,fts5] [--cutoffs 5,10,25] [--stand-in-embedder]

  LoCoMo is measured when LOCOMO_DIR names the unzipped data/locomo10.zip of snap-research/locomo.
  The embedder comes from the environment (EMBEDDING_PROVIDER, EMBEDDING_URL, ...), as for the service;
  --stand-in-embedder starts test/support/embedding-server.ts (a crude semantic stand-in) and uses it.
  RECALL_VECTOR_WEIGHT sets the vector side's weight in hybrid mode, to compare weights.
  BENCH_DATABASE_URL: measure on a throwaway database of that Postgres instead of an in-memory PGlite.`

const MODES = ['hybrid', 'text', 'vector'] as const
const BATCH = 500
const log = (message: string) => console.error(`[bench:recall ${new Date().toISOString().slice(11, 19)}] ${message}`)

interface HookPrompts {
  namespace: string
  prompts: Array<{ prompt: string; inject: string[] }>
}

/** Saves a set's memories through the API; answers the service's id of each labelled id, and back. */
async function load(app: FastifyInstance, set: LabelledSet): Promise<{ toService: Map<string, string>; fromService: Map<string, string> }> {
  const toService = new Map<string, string>()
  const fromService = new Map<string, string>()
  for (let start = 0; start < set.memories.length; start += BATCH) {
    const batch = set.memories.slice(start, start + BATCH)
    const items = batch.map(({ id: _id, ...memory }) => memory)
    const res = await app.inject({ method: 'POST', url: '/v1/memories/batch', payload: { items } })
    if (res.statusCode !== 201) throw new Error(`saving ${set.name} answered ${res.statusCode} ${res.body.slice(0, 300)}`)
    ;(res.json().items as Array<{ id: string }>).forEach((saved, i) => {
      toService.set(batch[i]!.id, saved.id)
      fromService.set(saved.id, batch[i]!.id)
    })
  }
  return { toService, fromService }
}

function sageRetriever(app: FastifyInstance, mode: string, fromService: Map<string, string>): Retriever {
  return async (query, k) => {
    const res = await app.inject({ method: 'POST', url: '/v1/recall', payload: { query: query.query, namespace: query.namespace, k, mode } })
    if (res.statusCode !== 200) throw new Error(`recall answered ${res.statusCode} ${res.body.slice(0, 300)}`)
    return (res.json().results as Array<{ id: string }>).map((hit) => fromService.get(hit.id) ?? hit.id)
  }
}

const percent = (share: number) => (share * 100).toFixed(1)

function table(set: LabelledSet, results: Array<{ system: string; figures: RecallFigures }>, cutoffs: readonly number[]): string {
  const kinds = set.kinds
  // By kind at 10 when it was measured: the issue's and LoCoMo's usual cut.
  const byKind = cutoffs.includes(10) ? 10 : cutoffs[0]!
  const head = `| system | ${cutoffs.map((k) => `R@${k}`).join(' | ')} | first relevant | ${kinds.map((kind) => `${kind} R@${byKind}`).join(' | ')} |`
  const rule = `|---|${cutoffs.map(() => '---:').join('|')}|---:|${kinds.map(() => '---:').join('|')}|`
  const rows = results.map(({ system, figures }) => {
    const first = `${figures.firstRelevant.all}/${figures.queries.all}`
    return `| ${system} | ${cutoffs.map((k) => percent(figures.byK[k]!.all!)).join(' | ')} | ${first} | ${kinds.map((kind) => percent(figures.byK[byKind]![kind] ?? 0)).join(' | ')} |`
  })
  const counts = kinds.map((kind) => `${kind} ${results[0]?.figures.queries[kind] ?? 0}`).join(', ')
  return [`**${set.name}**: ${set.memories.length.toLocaleString('en-US')} memories, ${set.queries.length.toLocaleString('en-US')} queries (${counts}).`, '', head, rule, ...rows].join('\n')
}

/**
 * The hook's labelled prompts over the project's memories: for each prompt whose right memory recall ranks first,
 * whether the hook injected it; for each prompt with nothing to inject, whether it injected nothing.
 */
async function measureHook(app: FastifyInstance, prompts: HookPrompts, set: LabelledSet, fromService: Map<string, string>): Promise<string> {
  let rankedFirst = 0
  let injectedWhenFirst = 0
  let empty = 0
  let emptyKeptEmpty = 0
  let injectedLines = 0
  let wrongInjected = 0
  const missed: string[] = []
  const lines: string[] = []
  for (const [i, { prompt, inject }] of prompts.prompts.entries()) {
    const recall = await app.inject({ method: 'POST', url: '/v1/recall', payload: { query: prompt, namespace: prompts.namespace, k: 10, mode: 'hybrid', filter: { exclude_session_id: 'bench-hook' } } })
    const first = fromService.get((recall.json().results as Array<{ id: string }>)[0]?.id ?? '')
    const res = await app.inject({
      method: 'POST',
      url: `/hooks/claude-code?namespace=${prompts.namespace}`,
      payload: { session_id: 'bench-hook', cwd: '/home/dev/atlas', hook_event_name: 'UserPromptSubmit', prompt, prompt_id: `bench-hook-${i}` }
    })
    const answer = res.json() as { hookSpecificOutput?: { additionalContext: string } }
    const context = answer.hookSpecificOutput?.additionalContext ?? ''
    const injected = set.memories.filter((memory) => context.includes(memory.content.slice(0, 60))).map((memory) => memory.id)
    injectedLines += injected.length
    if (inject.length === 0) {
      empty++
      if (injected.length === 0) emptyKeptEmpty++
      else wrongInjected += injected.length
    } else if (first !== undefined && inject.includes(first)) {
      rankedFirst++
      if (injected.includes(first)) injectedWhenFirst++
      else missed.push(prompt)
    }
    lines.push(`${JSON.stringify(prompt.slice(0, 50))}: first ${first ?? '-'}, injected [${injected.join(', ')}]`)
  }
  for (const line of lines) log(`hook ${line}`)
  return [
    `**The hook's labelled prompts** (${prompts.prompts.length}, over the project memories): of the ${rankedFirst} prompts whose right memory recall ranks first, ` +
      `**${injectedWhenFirst}** had it injected${missed.length > 0 ? ` (not: ${missed.map((p) => JSON.stringify(p)).join(', ')})` : ''}; ` +
      `of the ${empty} prompts with nothing to inject, **${emptyKeptEmpty}** got nothing (${wrongInjected} memories injected into the others); ` +
      `${injectedLines} memories injected in all.`
  ].join('\n')
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      sets: { type: 'string', default: 'locomo,project,hook' },
      modes: { type: 'string', default: 'hybrid,text,vector,fts5' },
      cutoffs: { type: 'string', default: CUTOFFS.join(',') },
      'stand-in-embedder': { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false }
    }
  })
  if (values.help) {
    console.log(USAGE)
    return
  }
  const wanted = new Set(values.sets.split(','))
  const systems = new Set(values.modes.split(','))
  const cutoffs = values.cutoffs.split(',').map(Number)
  let standIn: EmbeddingServer | undefined
  let database: BenchDatabase | undefined
  const env: Record<string, string | undefined> = { ...process.env }
  if (values['stand-in-embedder']) {
    standIn = await startEmbeddingServer({ dimension: 384 })
    Object.assign(env, { EMBEDDING_PROVIDER: 'openai', EMBEDDING_URL: standIn.url, EMBEDDING_MODEL: 'stand-in', EMBEDDING_DIMENSIONS: '384' })
  }
  if (process.env.BENCH_DATABASE_URL) {
    database = await createBenchDatabase(process.env.BENCH_DATABASE_URL)
    env.DATABASE_URL = database.url
  }
  // A remote embedder gets all the time it needs: a memory saved without its vector would be measured by text alone.
  const config: Config = { ...loadConfig(env), LOG_LEVEL: 'silent', SAGE_DATA_DIR: ':memory:', RATE_LIMIT_MAX: 1_000_000_000, EMBEDDING_SAVE_TIMEOUT_MS: 600_000 }
  // Namespaces this small are searched exactly: the graph is not needed, and growing it would only take the CPU.
  const app = await buildApp(config, { logger: false, backfill: false, vectorIndexer: false, termStatisticsFolder: false })
  const sections: string[] = []
  try {
    await app.ready()
    const embedder = embeddingProvider(config) === 'openai' ? `${config.EMBEDDING_MODEL} at ${values['stand-in-embedder'] ? 'the stand-in server' : config.EMBEDDING_URL}` : 'the built-in lexical embedder'
    sections.push(`Measured ${new Date().toISOString().slice(0, 10)} on ${cpus()[0]?.model.trim()}, ${cpus().length} cores, ${Math.round(totalmem() / 2 ** 30)} GiB, ` +
      `Node ${process.version}, ${database ? 'Postgres' : 'PGlite'}, with ${embedder}${process.env.RECALL_VECTOR_WEIGHT ? `, RECALL_VECTOR_WEIGHT=${process.env.RECALL_VECTOR_WEIGHT}` : ''}.`)

    const sets: LabelledSet[] = []
    if (wanted.has('locomo')) {
      if (process.env.LOCOMO_DIR) sets.push(await loadLocomo(process.env.LOCOMO_DIR))
      else log('LoCoMo skipped: LOCOMO_DIR is not set (unzip data/locomo10.zip of snap-research/locomo and point it there)')
    }
    const project = await readLabelledSet(join(REPO_ROOT, 'test/fixtures/recall/project-memories.json'))
    if (wanted.has('project') || wanted.has('hook')) sets.push(project)

    for (const set of sets) {
      log(`${set.name}: saving ${set.memories.length} memories`)
      const { fromService } = await load(app, set)
      // Every term counted, as on a service at rest (recall would count the rest itself, at a cost).
      await app.termStatisticsFolder.drainOnce()
      const { rows } = await app.db.query<{ n: number }>('SELECT count(*)::int AS n FROM memories WHERE embedding IS NULL')
      if (rows[0]!.n > 0) throw new Error(`${rows[0]!.n} memories of ${set.name} were saved without a vector: the embedder failed`)
      if (set !== project || wanted.has('project')) {
        const results: Array<{ system: string; figures: RecallFigures }> = []
        for (const mode of MODES.filter((m) => systems.has(m))) {
          log(`${set.name}: Sage ${mode}`)
          results.push({ system: `Sage ${mode}`, figures: await measure(set, sageRetriever(app, mode, fromService), cutoffs) })
        }
        if (systems.has('fts5')) {
          log(`${set.name}: SQLite FTS5`)
          const fts5 = fts5Baseline(set)
          results.push({ system: 'SQLite FTS5 bm25', figures: await measure(set, fts5.retrieve, cutoffs) })
          fts5.close()
        }
        sections.push(table(set, results, cutoffs))
      }
      if (set === project && wanted.has('hook')) {
        const prompts = JSON.parse(await (await import('node:fs/promises')).readFile(join(REPO_ROOT, 'test/fixtures/recall/hook-prompts.json'), 'utf8')) as HookPrompts
        sections.push(await measureHook(app, prompts, set, fromService))
      }
    }
  } finally {
    await app.close()
    await standIn?.close()
    await database?.drop()
  }
  console.log(sections.join('\n\n'))
}

main().catch((error: Error) => {
  console.error(`bench:recall: ${error.stack ?? error.message}`)
  process.exitCode = 1
})
