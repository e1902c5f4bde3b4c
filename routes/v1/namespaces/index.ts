import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { ErrorBody, ROLES } from '../../../src/memory/memory-schemas.js'
import { NamespacesResult } from '../../../src/memory/namespace-schemas.js'

const later = (a: string | null, b: string | null) => (a === null ? b : b === null ? a : a > b ? a : b)

const namespaces: FastifyPluginAsyncTypebox = async (fastify) => {
  fastify.get('', {
    // It names no namespace: it lists only those the key may read.
    config: { namespaceCheckedByHandler: true },
    schema: {
      tags: ['memories'],
      summary: 'The namespaces this key may read, with their counts and last activity',
      response: { 200: NamespacesResult, 503: ErrorBody }
    }
  }, async (request) => {
    const [stored, activity] = await Promise.all([fastify.memories.namespaces(), fastify.namespaceActivity.lastDay()])
    const names = new Set([...stored.map((n) => n.namespace), ...activity.keys()])
    const byName = new Map(stored.map((n) => [n.namespace, n]))
    const items = [...names].filter((name) => request.access.allows(name)).sort().map((namespace) => {
      const counts = byName.get(namespace)
      const recent = activity.get(namespace)
      const lastMemory = counts?.last_memory_at ?? null
      return {
        namespace,
        count: counts?.count ?? 0,
        roles: Object.fromEntries(ROLES.map((role) => [role, counts?.roles[role] ?? 0])),
        last_memory_at: lastMemory,
        last_activity_at: later(lastMemory, recent?.last_at ?? null),
        saves_24h: recent?.saves ?? 0,
        recalls_24h: recent?.recalls ?? 0
      }
    })
    return { items }
  })
}

export default namespaces
