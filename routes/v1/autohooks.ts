import type { FastifyInstance } from 'fastify'
import { ErrorBody } from '../../src/memory/memory-schemas.js'
import { requestedNamespaces, requireDelete, requireKey, requireNamespaces } from '../../src/plugins/app/access.js'

/**
 * Access for every /v1 route, here once so no route can forget it: a valid key (401), the delete permission
 * for any DELETE (403), and every namespace the validated body or query names within the key's scope (403).
 * Routes by id set `config.namespaceCheckedByHandler` and answer 404 for a memory outside the scope.
 */
export default async function v1Access(fastify: FastifyInstance) {
  // The OpenAPI document shows the key and its two refusals on every route.
  fastify.addHook('onRoute', (route) => {
    const response = route.schema?.response as Record<string, unknown> | undefined
    route.schema = { ...route.schema, security: [{ bearer: [] }], ...(response && { response: { 401: ErrorBody, 403: ErrorBody, ...response } }) }
  })
  fastify.addHook('onRequest', async (request) => requireKey(request))
  fastify.addHook('preHandler', async (request) => {
    if (request.method === 'DELETE') requireDelete(request)
    if (!request.routeOptions.config.namespaceCheckedByHandler) requireNamespaces(request, requestedNamespaces(request.body, request.query))
  })
}
