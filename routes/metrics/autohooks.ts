import type { FastifyInstance } from 'fastify'
import { SageError } from '../../src/errors.js'
import { bearerMatches } from '../../src/security/api-keys.js'

/** /metrics on the main port: absent when METRICS_PORT serves it elsewhere, behind METRICS_TOKEN when one is set. */
export default async function metricsAccess(fastify: FastifyInstance) {
  const { METRICS_PORT, METRICS_TOKEN } = fastify.config
  fastify.addHook('onRequest', async (request, reply) => {
    if (METRICS_PORT !== undefined) return reply.callNotFound()
    if (METRICS_TOKEN !== undefined && !bearerMatches(request.headers.authorization, METRICS_TOKEN)) {
      throw new SageError(401, 'SAGE_UNAUTHORIZED', 'METRICS_TOKEN is required: send Authorization: Bearer <token>', { 'www-authenticate': 'Bearer realm="sage-metrics"' })
    }
  })
}
