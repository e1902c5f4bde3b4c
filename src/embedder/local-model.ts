import { existsSync } from 'node:fs'
import { isAbsolute, join, resolve } from 'node:path'
import type { FeatureExtractionPipeline, ProgressInfo } from '@huggingface/transformers'

export type LocalModelDtype = 'fp32' | 'fp16' | 'q8' | 'int8' | 'uint8' | 'q4'
export type LocalModelPooling = 'mean' | 'cls'

/** What loading a local model needs; plain data, so it crosses into the worker thread as it is. */
export interface LocalModelOptions {
  /** A model id on the hub (`Xenova/all-MiniLM-L6-v2`) or a folder holding one (absolute, or starting with `./` or `../`). */
  model: string
  /** Where downloaded models are kept (`<cacheDir>/<model id>/…`). */
  cacheDir: string
  /** The hub downloads come from. */
  hubUrl: string
  /** Whether a model missing from the cache may be downloaded; folders are never downloaded. */
  allowDownload: boolean
  dtype: LocalModelDtype
  pooling: LocalModelPooling
  /** ONNX Runtime's intra-op threads. */
  threads: number
}

/** A loaded model: vectors for texts, one after the other in one array (what crosses threads without copying). */
export interface LocalModel {
  readonly dimension: number
  embed(texts: readonly string[]): Promise<Float32Array>
  dispose(): Promise<void>
}

/** A model that cannot be loaded. The message names the variable to change and the way out; it stops the start. */
export class LocalModelError extends Error {
  override readonly name = 'LocalModelError'
}

const PROBE_TEXT = 'Sage checks the model once at load.'
/** A folder is named as a path; anything else is a model id on the hub, which may itself hold one slash. */
const FOLDER_PREFIX = /^(\/|\.{1,2}\/|~\/|[A-Za-z]:[\\/])/

export function isModelFolder(model: string): boolean {
  return FOLDER_PREFIX.test(model)
}

/** The folder as an absolute path (so the embedder's id does not depend on the working directory), or the id as it is. */
export function modelSource(model: string): string {
  if (!isModelFolder(model)) return model
  const home = process.env.HOME ?? ''
  const path = model.startsWith('~/') ? join(home, model.slice(2)) : model
  return isAbsolute(path) ? path : resolve(path)
}

/** Whether `<cacheDir>/<id>` holds a downloaded model (its config.json, which every model has). */
export function isCached(options: Pick<LocalModelOptions, 'model' | 'cacheDir'>): boolean {
  return existsSync(join(resolve(options.cacheDir), options.model, 'config.json'))
}

const wayOut = 'or choose another EMBEDDING_PROVIDER (lexical needs no model)'

function reasonOf(error: unknown): string {
  if (!(error instanceof Error)) return String(error)
  // fetch says only "fetch failed"; what failed is in its cause.
  const cause = (error as { cause?: unknown }).cause
  return cause instanceof Error ? `${error.message} (${cause.message})` : error.message
}

function describeFailure(error: unknown, options: LocalModelOptions, source: string, wasCached: boolean): LocalModelError {
  const reason = reasonOf(error)
  const notFound = (error as { name?: string } | null)?.name === 'ModelFileNotFoundError'
  if (isModelFolder(options.model)) {
    const hint = notFound ? `a file is missing in ${source} (it needs config.json, tokenizer.json and onnx/model${dtypeSuffix(options.dtype)}.onnx)` : reason
    return new LocalModelError(`EMBEDDING_MODEL=${options.model} could not be loaded: ${hint}. Point EMBEDDING_MODEL at a folder holding a transformers.js model, ${wayOut}.`)
  }
  if (notFound && !options.allowDownload) return notCached(options)
  if (notFound) {
    return new LocalModelError(`EMBEDDING_MODEL=${options.model}: ${options.hubUrl} has no such model with ${options.dtype} weights (${reason}). Check the id and EMBEDDING_LOCAL_DTYPE, ${wayOut}.`)
  }
  if (!wasCached) {
    return new LocalModelError(`EMBEDDING_MODEL=${options.model} could not be downloaded from ${options.hubUrl}: ${reason}. Check the network and EMBEDDING_LOCAL_HUB_URL, copy the model into a folder and point EMBEDDING_MODEL at it, ${wayOut}.`)
  }
  return new LocalModelError(`EMBEDDING_MODEL=${options.model} could not be loaded: ${reason}. Run \`sage-memory models pull ${options.model}\` again to fetch it afresh, ${wayOut}.`)
}

function notCached(options: LocalModelOptions): LocalModelError {
  return new LocalModelError(
    `EMBEDDING_MODEL=${options.model} (${options.dtype} weights) is not in the model cache ${resolve(options.cacheDir)}, and Sage never downloads ` +
    `unasked. Download it once with \`sage-memory models pull ${options.model}\` (or set EMBEDDING_LOCAL_DOWNLOAD=true to let the start ` +
    `download it), point EMBEDDING_MODEL at a folder holding the model, ${wayOut}.`
  )
}

const DTYPE_SUFFIXES: Record<LocalModelDtype, string> = { fp32: '', fp16: '_fp16', q8: '_quantized', int8: '_int8', uint8: '_uint8', q4: '_q4' }

function dtypeSuffix(dtype: LocalModelDtype): string {
  return DTYPE_SUFFIXES[dtype]
}

/**
 * Loads a sentence-embedding model with transformers.js (ONNX Runtime for Node) and checks it embeds. Only a hub
 * model missing from the cache is downloaded, and only with `allowDownload`; `onProgress` hears of each file's bytes.
 */
export async function loadLocalModel(options: LocalModelOptions, onProgress?: (info: ProgressInfo) => void): Promise<LocalModel> {
  const source = modelSource(options.model)
  if (isModelFolder(options.model) && !existsSync(join(source, 'config.json'))) {
    throw new LocalModelError(`EMBEDDING_MODEL=${options.model}: no model in ${source} (config.json is missing). Point EMBEDDING_MODEL at a folder holding a transformers.js model, ${wayOut}.`)
  }
  // Loaded on demand: a service with another embedder never loads ONNX Runtime.
  const { env, LogLevel, pipeline } = await import('@huggingface/transformers')
  // Its failures reach the caller as errors, with their messages; the library's own log would only repeat them.
  env.logLevel = LogLevel.NONE
  env.cacheDir = resolve(options.cacheDir)
  // Hub ids resolve to the cache itself, never to a folder inside the library's installation.
  env.localModelPath = env.cacheDir
  env.allowLocalModels = true
  env.allowRemoteModels = options.allowDownload && !isModelFolder(options.model)
  env.remoteHost = options.hubUrl.endsWith('/') ? options.hubUrl : `${options.hubUrl}/`
  const wasCached = isModelFolder(options.model) || isCached(options)
  if (!env.allowRemoteModels && !wasCached) throw notCached(options)

  let extractor: FeatureExtractionPipeline
  try {
    extractor = await pipeline('feature-extraction', source, {
      dtype: options.dtype,
      device: 'cpu',
      session_options: { intraOpNumThreads: options.threads, interOpNumThreads: 1 },
      ...(onProgress ? { progress_callback: onProgress } : {})
    })
  } catch (error) {
    throw describeFailure(error, options, source, wasCached)
  }

  const embed = async (texts: readonly string[]): Promise<Float32Array> => {
    const output = await extractor([...texts], { pooling: options.pooling, normalize: true })
    if (output.dims.length !== 2 || output.dims[0] !== texts.length) {
      throw new Error(`the model's output has shape [${output.dims.join(', ')}], not one vector per text`)
    }
    // A copy of our own: the tensor's array may be a view the library reuses, and ours is handed to another thread.
    return Float32Array.from(output.data as Float32Array)
  }
  let dimension: number
  try {
    dimension = (await embed([PROBE_TEXT])).length
  } catch (error) {
    await extractor.dispose().catch(() => undefined)
    throw describeFailure(error, options, source, wasCached)
  }
  return { dimension, embed, dispose: () => extractor.dispose() }
}
