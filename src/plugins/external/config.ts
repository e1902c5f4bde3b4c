import fp from 'fastify-plugin'
import type { Config } from '../../config.js'

declare module 'fastify' {
  interface FastifyInstance {
    config: Config
  }
}

/** The validated environment, for every other plugin; it is loaded once by the caller of buildApp. */
export default fp<{ config: Config }>(
  async (fastify, options) => {
    fastify.decorate('config', options.config)
  },
  { name: 'config' }
)
