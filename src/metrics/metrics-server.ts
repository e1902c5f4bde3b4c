import Fastify, { type FastifyInstance } from 'fastify'
import type { Registry } from 'prom-client'
import { bearerMatches } from '../security/api-keys.js'

/** A second, tiny listener that serves only GET /metrics (METRICS_PORT), so the main port need not expose it. */
export function createMetricsServer(registry: Registry, options: { token?: string } = {}): FastifyInstance {
  const server = Fastify({ logger: false })
  server.get('/metrics', async (request, reply) => {
    if (options.token !== undefined && !bearerMatches(request.headers.authorization, options.token)) {
      return reply
        .code(401)
        .header('www-authenticate', 'Bearer realm="sage-metrics"')
        .send({ statusCode: 401, error: 'Unauthorized', code: 'SAGE_UNAUTHORIZED', message: 'METRICS_TOKEN is required: send Authorization: Bearer <token>' })
    }
    reply.type(registry.contentType)
    return registry.metrics()
  })
  return server
}
