import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from 'typebox'

const AccessResult = Type.Object({
  keys_required: Type.Boolean({ description: 'False when the service is open (no keys configured)' }),
  key: Type.Union([Type.String(), Type.Null()], { description: "The key's name; null when open" }),
  scopes: Type.Array(Type.String(), { description: 'Namespace patterns the key covers: *, a namespace, or a prefix ending in *' }),
  can_delete: Type.Boolean()
})

const access: FastifyPluginAsyncTypebox = async (fastify) => {
  fastify.get('', {
    config: { namespaceCheckedByHandler: true },
    schema: {
      tags: ['operations'],
      summary: 'Who this key is: its name, scopes and whether it may delete (what sage-memory doctor and the page check)',
      response: { 200: AccessResult }
    }
  }, async (request) => ({
    keys_required: fastify.apiKeys.enabled,
    key: request.access.keyName,
    scopes: [...request.access.scopes],
    can_delete: request.access.canDelete
  }))
}

export default access
