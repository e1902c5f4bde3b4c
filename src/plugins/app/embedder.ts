import fp from 'fastify-plugin'
import { embeddingModel, embeddingProvider, modelCacheDir } from '../../config.js'
import { createEmbedder } from '../../embedder/create-embedder.js'
import { isCached, isModelFolder } from '../../embedder/local-model.js'
import type { Embedder } from '../../embedder/embedder.js'

declare module 'fastify' {
  interface FastifyInstance {
    embedder: Embedder
  }
}

/** The configured embedder (or one handed in by a test, which the test closes). */
export default fp<{ embedder?: Embedder }>(
  async (fastify, options) => {
    const { config } = fastify
    const model = embeddingModel(config, 'local')
    const cache = { model, cacheDir: modelCacheDir(config) }
    if (!options.embedder && embeddingProvider(config) === 'local' && config.EMBEDDING_LOCAL_DOWNLOAD && !isModelFolder(model) && !isCached(cache)) {
      fastify.log.info(cache, 'downloading the embedding model (EMBEDDING_LOCAL_DOWNLOAD=true); later starts read it from the cache')
    }
    const embedder = options.embedder ?? (await createEmbedder(config))
    if (!options.embedder && embedder.close) fastify.addHook('onClose', () => embedder.close!())
    fastify.decorate('embedder', embedder)
    fastify.log.info({ embedder: embedder.id }, 'embedder ready')
  },
  { name: 'embedder', dependencies: ['config'] }
)
