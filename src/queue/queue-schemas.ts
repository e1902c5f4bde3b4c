import { Type } from 'typebox'
import { IdempotencyHeaders, MemoryId } from '../memory/memory-schemas.js'
import type { SaveKind, SaveOptions } from '../memory/memory-service.js'

/** The HTTP side of asynchronous saves: the `Prefer` header and the 202 answers. */

/** Idempotency-Key, plus `Prefer: respond-async` (RFC 7240) to be answered 202 once the save is queued. */
export const SaveHeaders = Type.Object({
  ...IdempotencyHeaders.properties,
  prefer: Type.Optional(Type.String({
    maxLength: 1024,
    description: '"respond-async": answer 202 once the save is durably queued (Redis). Without Redis, or while it is unreachable, the save is made at once and answered 201.'
  }))
})

const Queued = Type.Literal('queued')

export const QueuedSave = Type.Object(
  { id: MemoryId, status: Queued },
  { description: 'Queued: readable with GET /v1/memories/:id once the queue has drained (usually well under a second). A duplicate (same Idempotency-Key or source_id) is dropped when it lands and its id never becomes readable.' }
)

export const QueuedBatch = Type.Object(
  { items: Type.Array(Type.Object({ id: MemoryId })), status: Queued },
  { description: 'Every item validated and the batch queued as one entry, ids in input order' }
)

export const QueuedTurn = Type.Object(
  { ids: Type.Array(MemoryId, { minItems: 2, maxItems: 2 }), status: Queued },
  { description: 'Queued as one entry: [user_id, assistant_id], written together' }
)

/** The response header that says the preference was honoured. */
export const PREFERENCE_APPLIED = { 'preference-applied': 'respond-async' } as const

/** Whether a Prefer header asks for respond-async (RFC 7240: comma-separated preferences, parameters after `;`). */
export function prefersRespondAsync(prefer: string | string[] | undefined): boolean {
  if (prefer === undefined) return false
  const values = Array.isArray(prefer) ? prefer : [prefer]
  return values.some((value) =>
    value.split(',').some((preference) => preference.split(';')[0]!.split('=')[0]!.trim().toLowerCase() === 'respond-async')
  )
}

/** A save request's headers as the memory service's save options: its Idempotency-Key and whether to answer once queued. */
export function saveOptions(kind: SaveKind, headers: { 'idempotency-key'?: string; prefer?: string | string[] }): SaveOptions {
  return { kind, idempotencyKey: headers['idempotency-key'], respondAsync: prefersRespondAsync(headers.prefer) }
}
