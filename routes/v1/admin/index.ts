import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from 'typebox'
import { SageError } from '../../../src/errors.js'
import { ErrorBody } from '../../../src/memory/memory-schemas.js'
import { rebindEmbedder } from '../../../src/db/embedder-binding.js'

const ReembedResult = Type.Object({
  embedder: Type.String({ description: 'The embedder every memory is re-embedded with: the one this service runs' }),
  cleared: Type.Integer({ description: 'Memories whose vectors were cleared; the background backfill embeds them again' })
})

/** Operations on the whole store, through the service that owns it, for keys over every namespace that may delete. */
const admin: FastifyPluginAsyncTypebox = async (fastify) => {
  fastify.post('/reembed', {
    config: { namespaceCheckedByHandler: true },
    schema: {
      tags: ['operations'],
      summary: 'Re-embed every memory with this service\'s embedder, while it serves',
      description: 'Clears every vector in one transaction; the backfill then embeds each memory again in the background, ' +
        'while saves and recalls go on (recall ranks by full text until a memory has its vector back). What `sage-memory reembed` ' +
        'calls when the service is running. Needs a key with scope * that may delete.',
      response: { 200: ReembedResult, 403: ErrorBody }
    }
  }, async (request) => {
    if (!request.access.scopes.includes('*') || !request.access.canDelete) {
      throw new SageError(403, 'SAGE_FORBIDDEN', 're-embedding the store needs a key with scope * that may delete (an entry ending in =*:delete)')
    }
    const cleared = await rebindEmbedder(fastify.db, fastify.embedder)
    request.log.info({ embedder: fastify.embedder.id, cleared }, 'vectors cleared: every memory is re-embedded in the background')
    return { embedder: fastify.embedder.id, cleared }
  })
}

export default admin
