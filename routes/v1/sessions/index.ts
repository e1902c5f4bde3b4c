import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { DEFAULT_NAMESPACE } from '../../../src/memory/memory-service.js'
import { DEFAULTS, ErrorBody, SessionsQuery, SessionsResult } from '../../../src/memory/memory-schemas.js'

const sessions: FastifyPluginAsyncTypebox = async (fastify) => {
  fastify.get('', {
    schema: {
      tags: ['memories'],
      summary: 'Sessions of a namespace, most recently active first',
      querystring: SessionsQuery,
      response: { 200: SessionsResult, 400: ErrorBody, 503: ErrorBody }
    }
  }, async (request) => ({
    items: await fastify.memories.sessions(request.query.namespace ?? DEFAULT_NAMESPACE, request.query.limit ?? DEFAULTS.sessionsLimit)
  }))
}

export default sessions
