import { embeddingModel, embeddingProvider, modelCacheDir, type Config } from '../config.js'
import type { Embedder } from './embedder.js'
import { LexicalEmbedder } from './lexical-embedder.js'
import { LocalEmbedder } from './local-embedder.js'
import { OpenAIEmbedder } from './openai-embedder.js'

/**
 * The built-in lexical embedder, an OpenAI-compatible endpoint, or a local model, as configured. A local model is
 * loaded here, so a model that cannot be loaded stops the start with a message saying what to change.
 */
export async function createEmbedder(config: Config): Promise<Embedder> {
  const provider = embeddingProvider(config)
  if (provider === 'openai') {
    return new OpenAIEmbedder({
      url: config.EMBEDDING_URL!,
      model: embeddingModel(config, 'openai'),
      apiKey: config.EMBEDDING_API_KEY,
      dimension: config.EMBEDDING_DIMENSIONS!,
      sendDimensions: config.EMBEDDING_SEND_DIMENSIONS,
      timeoutMs: config.EMBEDDING_TIMEOUT_MS,
      batchSize: config.EMBEDDING_BATCH_SIZE,
      maxRetries: config.EMBEDDING_MAX_RETRIES
    })
  }
  if (provider === 'local') {
    return LocalEmbedder.load({
      model: embeddingModel(config, 'local'),
      cacheDir: modelCacheDir(config),
      hubUrl: config.EMBEDDING_LOCAL_HUB_URL,
      allowDownload: config.EMBEDDING_LOCAL_DOWNLOAD,
      dtype: config.EMBEDDING_LOCAL_DTYPE,
      pooling: config.EMBEDDING_LOCAL_POOLING,
      threads: config.EMBEDDING_LOCAL_THREADS,
      batchSize: config.EMBEDDING_LOCAL_BATCH_SIZE,
      dimension: config.EMBEDDING_DIMENSIONS
    })
  }
  return new LexicalEmbedder({ dimension: config.EMBEDDING_DIMENSIONS })
}
