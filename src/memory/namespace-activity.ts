import type { FastifyBaseLogger } from 'fastify'
import type { Queryable } from '../db/database.js'
import { createRoundFailures } from '../round-failures.js'

/**
 * Saves and recalls per namespace over the last day, for the overview. Counting in the database on every save
 * and recall would add a write to each; they are counted here, per namespace and hour, and added to
 * `namespace_activity` (migrations/006_injections.sql) every FLUSH_INTERVAL_MS, so replicas add up. What a
 * process had not yet flushed when it died is lost: these are statistics, not memories.
 */
export interface NamespaceActivity {
  saved(namespaces: readonly string[]): void
  recalled(namespace: string): void
  /** Saves, recalls and the last of either over the last 24 hours, for each namespace that had any. */
  lastDay(): Promise<Map<string, ActivityCounts>>
  flush(): Promise<void>
  start(): void
  stop(): Promise<void>
}

export interface ActivityCounts {
  saves: number
  recalls: number
  last_at: string
}

const FLUSH_INTERVAL_MS = 10_000
const HOUR_MS = 3_600_000
const DAY_MS = 24 * HOUR_MS
/** Hours older than this are deleted at a flush; the overview reads one day. */
const KEEP_MS = 7 * DAY_MS

interface Bucket {
  namespace: string
  hour: string
  saves: number
  recalls: number
  last_at: string
}

export function createNamespaceActivity(db: Queryable, log: FastifyBaseLogger): NamespaceActivity {
  let buckets = new Map<string, Bucket>()
  let timer: NodeJS.Timeout | undefined
  let flushing: Promise<void> | undefined

  function bump(namespace: string, field: 'saves' | 'recalls', n: number): void {
    const now = Date.now()
    const hour = new Date(now - (now % HOUR_MS)).toISOString()
    const key = `${namespace}\u0000${hour}`
    let bucket = buckets.get(key)
    if (!bucket) buckets.set(key, (bucket = { namespace, hour, saves: 0, recalls: 0, last_at: '' }))
    bucket[field] += n
    bucket.last_at = new Date(now).toISOString()
  }

  const failures = createRoundFailures(log, 'writing namespace activity', 'namespace activity not written; kept for the next round')

  async function write(): Promise<void> {
    if (buckets.size === 0) return
    const round = buckets
    buckets = new Map()
    try {
      await db.query(
        `INSERT INTO namespace_activity AS a (namespace, hour, saves, recalls, last_at)
         SELECT namespace, hour, saves, recalls, last_at
         FROM jsonb_to_recordset($1::jsonb) AS x(namespace text, hour timestamptz, saves integer, recalls integer, last_at timestamptz)
         ON CONFLICT (namespace, hour) DO UPDATE
           SET saves = a.saves + excluded.saves, recalls = a.recalls + excluded.recalls, last_at = greatest(a.last_at, excluded.last_at)`,
        [JSON.stringify([...round.values()])]
      )
      await db.query('DELETE FROM namespace_activity WHERE hour < $1', [new Date(Date.now() - KEEP_MS)])
      failures.succeeded()
    } catch (error) {
      // Counted again into what came meanwhile; the next round writes both.
      for (const [key, bucket] of round) {
        const now = buckets.get(key)
        if (!now) buckets.set(key, bucket)
        else {
          now.saves += bucket.saves
          now.recalls += bucket.recalls
          if (bucket.last_at > now.last_at) now.last_at = bucket.last_at
        }
      }
      failures.failed(error)
    }
  }

  const flush = async (): Promise<void> => {
    await flushing
    flushing = write().finally(() => {
      flushing = undefined
    })
    await flushing
  }

  return {
    saved(namespaces) {
      for (const namespace of namespaces) bump(namespace, 'saves', 1)
    },
    recalled(namespace) {
      bump(namespace, 'recalls', 1)
    },
    async lastDay() {
      const since = new Date(Date.now() - DAY_MS)
      const { rows } = await db.query<{ namespace: string; saves: number; recalls: number; last_at: Date | string }>(
        `SELECT namespace, sum(saves)::int AS saves, sum(recalls)::int AS recalls, max(last_at) AS last_at
         FROM namespace_activity WHERE hour >= $1 GROUP BY namespace`,
        // The hour that holds `since` counts whole: a day of hourly buckets is 24 or 25 of them.
        [new Date(since.getTime() - (since.getTime() % HOUR_MS))]
      )
      const counts = new Map<string, ActivityCounts>()
      for (const row of rows) counts.set(row.namespace, { saves: row.saves, recalls: row.recalls, last_at: new Date(row.last_at).toISOString() })
      // What this process counted since its last flush.
      for (const bucket of buckets.values()) {
        const known = counts.get(bucket.namespace)
        if (!known) counts.set(bucket.namespace, { saves: bucket.saves, recalls: bucket.recalls, last_at: bucket.last_at })
        else {
          known.saves += bucket.saves
          known.recalls += bucket.recalls
          if (bucket.last_at > known.last_at) known.last_at = bucket.last_at
        }
      }
      return counts
    },
    flush,
    start() {
      timer ??= setInterval(() => void flush(), FLUSH_INTERVAL_MS).unref()
    },
    async stop() {
      clearInterval(timer)
      timer = undefined
      await flush()
    }
  }
}
