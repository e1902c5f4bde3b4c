import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { ErrorBody, RecallBody, RecallResult } from '../../../src/memory/memory-schemas.js'

const recall: FastifyPluginAsyncTypebox = async (fastify) => {
  fastify.post('', {
    schema: {
      tags: ['recall'],
      summary: 'Find the memories most relevant to a query',
      description:
        'hybrid (default) takes candidates from a vector k-NN and from the full-text index and ranks them by ' +
        '1 - (1 - vector)(1 - text); vector and text use one side alone. scores holds each side\'s own figure. ' +
        'min_score drops weaker hits. format "context" adds one ready-to-inject block cut to token_budget.',
      body: RecallBody,
      response: { 200: RecallResult, 400: ErrorBody, 503: ErrorBody }
    }
  }, async (request) => fastify.memories.recall(request.body))
}

export default recall
