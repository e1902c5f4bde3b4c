import type { FastifyInstance } from 'fastify'
import { requireKey } from '../../src/plugins/app/access.js'

/**
 * Every /hooks call needs a valid key (401). A hook finds its namespace itself (from the cwd), so the route
 * asks `request.access.allows(namespace)` before it reads or writes anything.
 */
export default async function hooksAccess(fastify: FastifyInstance) {
  fastify.addHook('onRoute', (route) => {
    route.schema = { ...route.schema, security: [{ bearer: [] }] }
  })
  fastify.addHook('onRequest', async (request) => requireKey(request))
}
