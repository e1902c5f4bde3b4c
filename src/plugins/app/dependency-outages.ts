import fp from 'fastify-plugin'
import { createDependencyOutages, type DependencyOutages } from '../../dependency-outages.js'

declare module 'fastify' {
  interface FastifyInstance {
    outages: DependencyOutages
  }
}

/** Tracks outages of the store, Redis and the embedder for the log and /metrics (the error handler reports refusals). */
export default fp(
  async (fastify) => {
    const { db, redis, embedder } = fastify
    const outages = createDependencyOutages({
      log: fastify.log,
      metrics: fastify.metrics,
      probes: {
        database: () => db.query('SELECT 1'),
        ...(redis ? { redis: () => redis.commands.ping() } : {}),
        embedder: () => embedder.embed(['probe'], AbortSignal.timeout(2_000))
      }
    })
    fastify.decorate('outages', outages)
    fastify.addHook('onClose', async () => outages.stop())
  },
  { name: 'dependency-outages', dependencies: ['metrics', 'database', 'redis', 'embedder'] }
)
