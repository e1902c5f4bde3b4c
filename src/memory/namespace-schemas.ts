import { Type } from 'typebox'
import { ROLES, Timestamp } from './memory-schemas.js'

/** GET /v1/namespaces: what the page's overview and namespace list show. */
export const NamespaceSummary = Type.Object({
  namespace: Type.String(),
  count: Type.Integer({ description: 'Memories stored' }),
  roles: Type.Object(Object.fromEntries(ROLES.map((role) => [role, Type.Integer()])), { description: 'Memories stored, by role' }),
  last_memory_at: Type.Union([Timestamp, Type.Null()], { description: 'created_at of the newest memory' }),
  last_activity_at: Type.Union([Timestamp, Type.Null()], { description: 'The later of the newest memory and the last save or recall of the last day' }),
  saves_24h: Type.Integer({ description: 'Memories saved over the last 24 hours' }),
  recalls_24h: Type.Integer({ description: 'Recalls answered over the last 24 hours (hooks included)' })
})

export const NamespacesResult = Type.Object({ items: Type.Array(NamespaceSummary) })
