import { SingleBar } from 'cli-progress'
import type { ProgressInfo } from '@huggingface/transformers'
import { embeddingModel, loadConfig, modelCacheDir, type Config } from '../config.js'
import { listCachedModels } from '../embedder/model-cache.js'
import { isCached, isModelFolder, loadLocalModel } from '../embedder/local-model.js'
import type { Command } from './command.js'
import { parseCommandArgs, UsageError } from './parse-command-args.js'

const USAGE = `pull [model-id]   download a model into the model cache (default EMBEDDING_MODEL, else Xenova/all-MiniLM-L6-v2) and check it loads
list [--json]     the models in the cache, their size and weights
  reads SAGE_DATA_DIR, EMBEDDING_LOCAL_CACHE_DIR, EMBEDDING_LOCAL_HUB_URL and EMBEDDING_LOCAL_DTYPE, as the service does`

const size = (bytes: number) => (bytes < 1e6 ? `${(bytes / 1e3).toFixed(1)} kB` : `${(bytes / 1e6).toFixed(1)} MB`)

/** A bar over all of the model's files together, on stderr; where stderr is not a terminal, a line every few seconds. */
function progressBar(model: string): { onProgress(info: ProgressInfo): void; stop(): void } {
  const bar = new SingleBar({
    format: `${model} [{bar}] {percentage}% {done} of {size}`,
    noTTYOutput: true,
    notTTYSchedule: 2000,
    hideCursor: true
  })
  let started = false
  return {
    onProgress(info) {
      if (info.status !== 'progress_total' || info.total <= 0) return
      const payload = { done: size(info.loaded), size: size(info.total) }
      if (!started) bar.start(info.total, info.loaded, payload)
      else bar.setTotal(info.total)
      started = true
      bar.update(info.loaded, payload)
    },
    stop: () => started && bar.stop()
  }
}

async function pull(config: Config, model: string): Promise<number> {
  if (isModelFolder(model)) {
    console.error(`${model} is a folder: Sage loads it where it is (EMBEDDING_MODEL=${model}); there is nothing to pull`)
    return 2
  }
  const cacheDir = modelCacheDir(config)
  const options = {
    model,
    cacheDir,
    hubUrl: config.EMBEDDING_LOCAL_HUB_URL,
    allowDownload: true,
    dtype: config.EMBEDDING_LOCAL_DTYPE,
    pooling: config.EMBEDDING_LOCAL_POOLING,
    threads: config.EMBEDDING_LOCAL_THREADS
  }
  const wasCached = isCached(options)
  const bar = progressBar(model)
  const loaded = await loadLocalModel(options, bar.onProgress).finally(() => bar.stop())
  await loaded.dispose()
  const cached = (await listCachedModels(cacheDir)).find((m) => m.id === model)
  console.log(
    `${model} ${wasCached ? 'was already' : 'is now'} in ${cacheDir} (${size(cached?.bytes ?? 0)}, ${config.EMBEDDING_LOCAL_DTYPE} weights); ` +
    `it loads and makes vectors of ${loaded.dimension} dimensions. Serve it with EMBEDDING_PROVIDER=local EMBEDDING_MODEL=${model}`
  )
  return 0
}

async function list(config: Config, json: boolean): Promise<number> {
  const cacheDir = modelCacheDir(config)
  const models = await listCachedModels(cacheDir)
  const configured = embeddingModel(config, 'local')
  if (json) {
    console.log(JSON.stringify(models.map((m) => ({ ...m, configured: m.id === configured })), null, 2))
    return 0
  }
  if (models.length === 0) {
    console.log(`no models in ${cacheDir} (sage-memory models pull ${configured})`)
    return 0
  }
  console.log(`models in ${cacheDir}:`)
  for (const m of models) {
    const weights = m.weights.length > 0 ? m.weights.join(', ') : 'no weights: the download did not finish, pull it again'
    console.log(`  ${m.id}  ${size(m.bytes)}  ${weights}${m.id === configured ? '  (EMBEDDING_MODEL)' : ''}`)
  }
  return 0
}

/** `sage-memory models pull|list`: the one way a model reaches the cache without the start being told it may download. */
export const models: Command = {
  summary: 'download a local embedding model ahead of time, and list the ones downloaded',
  usage: USAGE,
  async run(args) {
    const { values, positionals } = parseCommandArgs(args, { json: { type: 'boolean', default: false } }, true)
    const [action, model, ...extra] = positionals
    if (action !== 'pull' && action !== 'list') throw new UsageError(action === undefined ? 'name the action: pull or list' : `unknown action "${action}"; use pull or list`)
    const unexpected = action === 'list' ? model : extra[0]
    if (unexpected !== undefined) throw new UsageError(`unexpected argument "${unexpected}"`)
    const config = loadConfig()
    return action === 'pull' ? pull(config, model ?? embeddingModel(config, 'local')) : list(config, values.json)
  }
}
