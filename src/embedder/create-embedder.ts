import { embeddingProvider, type Config } from '../config.js'
import type { Embedder } from './embedder.js'
import { LexicalEmbedder } from './lexical-embedder.js'
import { OpenAIEmbedder } from './openai-embedder.js'

/** The built-in lexical embedder unless an OpenAI-compatible endpoint is configured. */
export function createEmbedder(config: Config): Embedder {
  if (embeddingProvider(config) === 'openai') {
    return new OpenAIEmbedder({
      url: config.EMBEDDING_URL!,
      model: config.EMBEDDING_MODEL,
      apiKey: config.EMBEDDING_API_KEY,
      dimension: config.EMBEDDING_DIMENSIONS!,
      sendDimensions: config.EMBEDDING_SEND_DIMENSIONS,
      timeoutMs: config.EMBEDDING_TIMEOUT_MS,
      batchSize: config.EMBEDDING_BATCH_SIZE,
      maxRetries: config.EMBEDDING_MAX_RETRIES
    })
  }
  return new LexicalEmbedder({ dimension: config.EMBEDDING_DIMENSIONS ?? 384 })
}
