import type { Queryable } from '../db/database.js'
import { decodeCursor, encodeCursor, MEMORY_COLUMNS, toMemory, type MemoryRow } from '../memory/memory-store.js'
import type { Memory } from '../memory/memory-schemas.js'

/** Why nothing was injected, or that something was. */
export const INJECTION_OUTCOMES = ['injected', 'nothing_recalled', 'none_relevant', 'deadline', 'unavailable', 'save_only', 'no_history'] as const
export type InjectionOutcome = (typeof INJECTION_OUTCOMES)[number]

/**
 * One memory a hook considered: its id, whether it went into the context, the rule that decided, and what the
 * recall said of it (score, scores and any other field the recall answers, such as matched terms). No content.
 */
export interface TracedHit {
  id: string
  injected: boolean
  rule: string
  [field: string]: unknown
}

/** One answered UserPromptSubmit or SessionStart, as recorded. */
export interface Injection {
  created_at: string
  namespace: string
  session_id: string | null
  event: 'UserPromptSubmit' | 'SessionStart'
  prompt: string | null
  outcome: InjectionOutcome
  hits: TracedHit[]
  prompt_memory_id: string | null
  took_ms: number
}

export interface StoredInjection extends Omit<Injection, 'hits'> {
  id: string
  /** Each hit with the memory as stored now, or null once it was forgotten. */
  hits: Array<TracedHit & { memory: Memory | null }>
}

export interface InjectionListParams {
  namespace: string
  sessionId?: string
  limit: number
  cursor?: string
}

interface InjectionRow {
  id: string
  created_at: Date | string
  namespace: string
  session_id: string | null
  event: Injection['event']
  prompt: string | null
  outcome: InjectionOutcome
  hits: TracedHit[]
  prompt_memory_id: string | null
  took_ms: number | null
}

const BIGINT_MAX = 2n ** 63n - 1n
/** An injection's id is a positive bigint. */
const isInjectionId = (id: string) => /^[1-9]\d{0,18}$/.test(id) && BigInt(id) <= BIGINT_MAX

const toIso = (value: Date | string) => (value instanceof Date ? value : new Date(value)).toISOString()

/** The injections table (migrations/006_injections.sql): written in rounds, read a page at a time, pruned to its bounds. */
export function createInjectionStore(db: Queryable) {
  return {
    async insertMany(injections: readonly Injection[]): Promise<void> {
      if (injections.length === 0) return
      await db.query(
        `INSERT INTO injections (created_at, namespace, session_id, event, prompt, outcome, hits, prompt_memory_id, took_ms)
         SELECT created_at, namespace, session_id, event, prompt, outcome, hits, prompt_memory_id, took_ms
         FROM jsonb_to_recordset($1::jsonb) AS x(created_at timestamptz, namespace text, session_id text, event text, prompt text,
                                                 outcome text, hits jsonb, prompt_memory_id uuid, took_ms real)`,
        [JSON.stringify(injections)]
      )
    },

    /** Newest first; each hit joined with its memory as it is now (of the same namespace only). */
    async list(params: InjectionListParams): Promise<{ items: StoredInjection[]; next_cursor: string | null }> {
      const values: unknown[] = [params.namespace]
      const where = ['namespace = $1']
      if (params.sessionId !== undefined) where.push(`session_id = $${values.push(params.sessionId)}`)
      if (params.cursor !== undefined) {
        const [at, id] = decodeCursor(params.cursor, isInjectionId)
        where.push(`(created_at, id) < ($${values.push(at)}::timestamptz, $${values.push(id)}::bigint)`)
      }
      const { rows } = await db.query<InjectionRow>(
        `SELECT id::text AS id, created_at, namespace, session_id, event, prompt, outcome, hits, prompt_memory_id, took_ms
         FROM injections WHERE ${where.join(' AND ')}
         ORDER BY created_at DESC, id DESC LIMIT $${values.push(params.limit + 1)}`,
        values
      )
      const page = rows.slice(0, params.limit)
      const ids = [...new Set(page.flatMap((row) => row.hits.map((hit) => hit.id)))]
      const memories = new Map<string, Memory>()
      if (ids.length > 0) {
        const found = await db.query<MemoryRow>(`SELECT ${MEMORY_COLUMNS} FROM memories WHERE namespace = $1 AND id = ANY($2::uuid[])`, [params.namespace, ids])
        for (const row of found.rows) memories.set(row.id, toMemory(row))
      }
      const items = page.map((row) => ({
        ...row,
        created_at: toIso(row.created_at),
        took_ms: row.took_ms ?? 0,
        hits: row.hits.map((hit) => ({ ...hit, memory: memories.get(hit.id) ?? null }))
      }))
      const last = items.at(-1)
      return { items, next_cursor: rows.length > params.limit && last ? encodeCursor(last.created_at, last.id) : null }
    },

    /** Forgets the traces of a namespace, or of one session of it. */
    async forgetSession(namespace: string, sessionId?: string): Promise<number> {
      const { rowCount } = sessionId === undefined
        ? await db.query('DELETE FROM injections WHERE namespace = $1', [namespace])
        : await db.query('DELETE FROM injections WHERE namespace = $1 AND session_id = $2', [namespace, sessionId])
      return rowCount
    },

    /** Forgets the trace whose prompt was this memory; the others name it by id only, which now joins to nothing. */
    async forgetPromptMemory(memoryId: string): Promise<number> {
      return (await db.query('DELETE FROM injections WHERE prompt_memory_id = $1', [memoryId])).rowCount
    },

    /** Keeps the newest `maxRows` and none older than `maxAgeMs`. */
    async prune(maxRows: number, maxAgeMs: number): Promise<number> {
      const old = await db.query('DELETE FROM injections WHERE created_at < $1', [new Date(Date.now() - maxAgeMs)])
      const extra = await db.query(
        'DELETE FROM injections WHERE id <= (SELECT id FROM injections ORDER BY id DESC OFFSET $1 LIMIT 1)',
        [maxRows]
      )
      return old.rowCount + extra.rowCount
    }
  }
}

export type InjectionStore = ReturnType<typeof createInjectionStore>
