import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { InjectionsQuery, InjectionsResult } from '../../../src/hooks/injection-schemas.js'
import { DEFAULT_NAMESPACE } from '../../../src/memory/memory-service.js'
import { DEFAULTS, ErrorBody } from '../../../src/memory/memory-schemas.js'

const injections: FastifyPluginAsyncTypebox = async (fastify) => {
  fastify.get('', {
    schema: {
      tags: ['hooks'],
      summary: 'What the hooks injected into the agent, and why, newest first',
      description: 'One item per UserPromptSubmit and SessionStart answered: the prompt, each memory considered with its scores, ' +
        'whether it was injected and the rule that decided, or why nothing was. Kept within INJECTIONS_MAX_ROWS and INJECTIONS_MAX_AGE_DAYS.',
      querystring: InjectionsQuery,
      response: { 200: InjectionsResult, 400: ErrorBody, 503: ErrorBody }
    }
  }, async (request) => {
    const q = request.query
    return fastify.injections.store.list({ namespace: q.namespace ?? DEFAULT_NAMESPACE, sessionId: q.session_id, limit: q.limit ?? DEFAULTS.listLimit, cursor: q.cursor })
  })
}

export default injections
