import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { ErrorBody, TurnBody, TurnResult, type SaveResult } from '../../../src/memory/memory-schemas.js'
import { PREFERENCE_APPLIED, QueuedTurn, SaveHeaders, saveOptions } from '../../../src/queue/queue-schemas.js'

const turns: FastifyPluginAsyncTypebox = async (fastify) => {
  fastify.post('', {
    schema: {
      tags: ['memories'],
      summary: 'Save a user input and the assistant response as two memories in one transaction',
      description: '201 with [user_id, assistant_id]; a retry with the same Idempotency-Key answers 200 with the first ids. ' +
        'With Prefer: respond-async, 202 {"ids", "status": "queued"} once validated and queued as one entry.',
      headers: SaveHeaders,
      body: TurnBody,
      response: { 200: TurnResult, 201: TurnResult, 202: QueuedTurn, 400: ErrorBody, 503: ErrorBody }
    }
  }, async (request, reply) => {
    const outcome = await fastify.memories.save({ turn: request.body }, saveOptions('turn', request.headers))
    if (outcome.queued) return reply.code(202).headers(PREFERENCE_APPLIED).send({ ids: outcome.ids, status: 'queued' as const })
    const [user, assistant] = outcome.results as [SaveResult, SaveResult]
    const created = user.created || assistant.created
    return reply.code(created ? 201 : 200).send({ ids: [user.id, assistant.id], created })
  })
}

export default turns
