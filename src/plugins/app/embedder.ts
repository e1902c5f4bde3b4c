import fp from 'fastify-plugin'
import { createEmbedder } from '../../embedder/create-embedder.js'
import type { Embedder } from '../../embedder/embedder.js'

declare module 'fastify' {
  interface FastifyInstance {
    embedder: Embedder
  }
}

/** The configured embedder (or one handed in by a test). */
export default fp<{ embedder?: Embedder }>(
  async (fastify, options) => {
    const embedder = options.embedder ?? createEmbedder(fastify.config)
    fastify.decorate('embedder', embedder)
    fastify.log.info({ embedder: embedder.id }, 'embedder ready')
  },
  { name: 'embedder', dependencies: ['config'] }
)
