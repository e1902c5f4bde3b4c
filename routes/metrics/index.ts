import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'

const metrics: FastifyPluginAsyncTypebox = async (fastify) => {
  fastify.get('', {
    schema: { tags: ['operations'], summary: 'Prometheus text exposition', produces: ['text/plain'] }
  }, async (_request, reply) => {
    const registry = fastify.metrics.registry
    reply.type(registry.contentType)
    return registry.metrics()
  })
}

export default metrics
