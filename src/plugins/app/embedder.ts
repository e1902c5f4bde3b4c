import fp from 'fastify-plugin'
import { createEmbedder } from '../../embedder/create-embedder.js'
import type { Embedder } from '../../embedder/embedder.js'

declare module 'fastify' {
  interface FastifyInstance {
    embedder: Embedder
  }
}

/** The configured embedder (or one handed in by a test, which the test closes). */
export default fp<{ embedder?: Embedder }>(
  async (fastify, options) => {
    const embedder = options.embedder ?? (await createEmbedder(fastify.config))
    if (!options.embedder && embedder.close) fastify.addHook('onClose', () => embedder.close!())
    fastify.decorate('embedder', embedder)
    fastify.log.info({ embedder: embedder.id }, 'embedder ready')
  },
  { name: 'embedder', dependencies: ['config'] }
)
