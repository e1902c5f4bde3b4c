/** The Redis keys of the save queue, under REDIS_KEY_PREFIX; the service, the metrics and the operator commands share them. */
export interface QueueKeys {
  /** The stream of queued saves: one entry per save (a turn's two memories are one entry). */
  stream: string
  /** The one consumer group every replica reads in. */
  group: string
  /** Entries that failed QUEUE_MAX_ATTEMPTS times, with their error, for an operator to list and replay. */
  deadLetters: string
  /** Failed attempts per entry id, kept in Redis so they survive the consumer that made them. */
  attempts: string
  /** Each live consumer's last heartbeat (a sorted set scored in epoch milliseconds): who is still there. */
  consumers: string
  /** Prefix of the claims of queued Idempotency-Keys: `<this><namespace>|<key>` holds the id the first request was given. */
  idempotency: string
}

export function queueKeys(prefix: string): QueueKeys {
  return {
    stream: `${prefix}saves`,
    group: 'sage-savers',
    deadLetters: `${prefix}saves:dead`,
    attempts: `${prefix}saves:attempts`,
    consumers: `${prefix}saves:consumers`,
    idempotency: `${prefix}saves:idempotency:`
  }
}

/** The stream entry field that holds the save, as JSON. */
export const SAVE_FIELD = 'save'

/** Milliseconds since the epoch at which Redis appended the entry (the first half of its id). */
export function entryTime(entryId: string): number {
  return Number(entryId.slice(0, entryId.indexOf('-')))
}

/** Redis's flat replies of names and values (a stream entry's fields, XINFO, ZRANGE WITHSCORES) as an object. */
export function pairsToObject(flat: ReadonlyArray<string | number>): Record<string, string> {
  const object: Record<string, string> = {}
  for (let i = 0; i + 1 < flat.length; i += 2) object[String(flat[i])] = String(flat[i + 1])
  return object
}
