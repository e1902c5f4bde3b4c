import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from 'typebox'
import { notFound } from '../../../src/errors.js'
import { DEFAULT_NAMESPACE } from '../../../src/memory/memory-service.js'
import { normalizeText } from '../../../src/memory/normalize.js'
import {
  BatchBody, BatchResult, DEFAULTS, DeleteManyQuery, DeleteManyResult, ErrorBody, IdParams, ListQuery, ListResult, Memory, MemoryInput, SaveResult
} from '../../../src/memory/memory-schemas.js'
import { PREFERENCE_APPLIED, QueuedBatch, QueuedSave, SaveHeaders, saveOptions } from '../../../src/queue/queue-schemas.js'

const errors = { 400: ErrorBody, 404: ErrorBody, 413: ErrorBody, 503: ErrorBody }

const memories: FastifyPluginAsyncTypebox = async (fastify) => {
  fastify.post('', {
    schema: {
      tags: ['memories'],
      summary: 'Save one memory',
      description: '201 when created; 200 with the first id when it repeats an Idempotency-Key or source_id of the namespace. ' +
        'With Prefer: respond-async, 202 {"id", "status": "queued"} once validated and durably queued (Redis), or 201/200 as above when no queue is available.',
      headers: SaveHeaders,
      body: MemoryInput,
      response: { 200: SaveResult, 201: SaveResult, 202: QueuedSave, ...errors }
    }
  }, async (request, reply) => {
    const outcome = await fastify.memories.save({ memory: request.body }, saveOptions('single', request.headers))
    if (outcome.queued) return reply.code(202).headers(PREFERENCE_APPLIED).send({ id: outcome.ids[0]!, status: 'queued' as const })
    const result = outcome.results[0]!
    return reply.code(result.created ? 201 : 200).send(result)
  })

  fastify.post('/batch', {
    bodyLimit: fastify.config.BATCH_BODY_LIMIT_BYTES,
    schema: {
      tags: ['memories'],
      summary: 'Save 1 to 1,000 memories in one transaction',
      description: 'All or nothing: an invalid item is a 400 naming its index, and nothing is written. Results follow input order. ' +
        'With Prefer: respond-async, 202 {"items": [{"id"}], "status": "queued"} once every item is validated and the batch queued as one entry (it lands all or nothing).',
      headers: SaveHeaders,
      body: BatchBody,
      response: { 201: BatchResult, 202: QueuedBatch, ...errors }
    }
  }, async (request, reply) => {
    const outcome = await fastify.memories.save({ items: request.body.items }, saveOptions('batch', request.headers))
    if (outcome.queued) return reply.code(202).headers(PREFERENCE_APPLIED).send({ items: outcome.ids.map((id) => ({ id })), status: 'queued' as const })
    return reply.code(201).send({ items: outcome.results })
  })

  fastify.get('', {
    schema: {
      tags: ['memories'],
      summary: 'List memories newest first, a page at a time',
      querystring: ListQuery,
      response: { 200: ListResult, ...errors }
    }
  }, async (request) => {
    const q = request.query
    return fastify.memories.list({
      namespace: q.namespace ?? DEFAULT_NAMESPACE,
      sessionId: q.session_id,
      role: q.role,
      limit: q.limit ?? DEFAULTS.listLimit,
      cursor: q.cursor
    })
  })

  fastify.delete('', {
    schema: {
      tags: ['memories'],
      summary: 'Forget a whole namespace, or one session of it',
      querystring: DeleteManyQuery,
      response: { 200: DeleteManyResult, ...errors }
    }
  }, async (request) => {
    const deleted = await fastify.memories.deleteMany(request.query.namespace, request.query.session_id, request.access)
    // The prompts of a forgotten session are forgotten in its injection traces too (its id normalised as saves store it).
    const sessionId = request.query.session_id === undefined ? undefined : normalizeText(request.query.session_id)
    await fastify.injections.store.forgetSession(request.query.namespace, sessionId)
    return { deleted }
  })

  // By id the namespace is known only after the lookup: one outside the key's scope is a 404 like a missing id.
  fastify.get('/:id', {
    config: { namespaceCheckedByHandler: true },
    schema: { tags: ['memories'], summary: 'Read one memory', params: IdParams, response: { 200: Memory, ...errors } }
  }, async (request) => {
    const memory = await fastify.memories.get(request.params.id)
    if (!memory || !request.access.allows(memory.namespace)) throw notFound()
    return memory
  })

  fastify.delete('/:id', {
    config: { namespaceCheckedByHandler: true },
    schema: { tags: ['memories'], summary: 'Forget one memory', params: IdParams, response: { 204: Type.Null(), ...errors } }
  }, async (request, reply) => {
    const namespace = await fastify.memories.delete(request.params.id, request.access)
    if (!namespace) throw notFound()
    await fastify.injections.store.forgetPromptMemory(request.params.id)
    return reply.code(204).send(null)
  })
}

export default memories
