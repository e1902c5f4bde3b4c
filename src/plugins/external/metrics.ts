import fp from 'fastify-plugin'
import { createSageMetrics, type SageMetrics } from '../../metrics/sage-metrics.js'

declare module 'fastify' {
  interface FastifyInstance {
    metrics: SageMetrics
  }
}

/** prom-client on a registry this app owns, and the HTTP duration histogram labelled by route pattern. */
export default fp(
  async (fastify) => {
    const metrics = createSageMetrics()
    fastify.decorate('metrics', metrics)
    fastify.addHook('onResponse', async (request, reply) => {
      // The pattern (/v1/memories/:id), never the raw URL, so label values stay few.
      const route = request.routeOptions.url ?? 'unmatched'
      metrics.httpDuration.observe({ method: request.method, route, status_code: String(reply.statusCode) }, reply.elapsedTime / 1000)
    })
  },
  { name: 'metrics' }
)
