import { errorMessage } from '../client/batch-upload.js'
import type { Memory } from '../memory/memory-schemas.js'

/**
 * `sage-memory export`: a namespace's memories (or one session's) out of a running Sage, as JSON Lines: one memory a
 * line, every field of the API's memory with its original id and time, newest first. `sage-memory import` reads the
 * same lines back (src/backup/memory-import.ts).
 */

export interface MemoryExportOptions {
  url: string
  apiKey?: string
  namespace: string
  sessionId?: string
  /** Receives each line, newline included; awaited, so a slow file holds the next page back. */
  write: (line: string) => Promise<void> | void
  /** After each page: memories written so far, and how many there are when Sage can say (one session). */
  onProgress?: (exported: number, total: number | undefined) => void
  retryDelaysMs?: readonly number[]
}

/** The fields of an exported line, in this order. */
export const EXPORTED_FIELDS = ['id', 'namespace', 'session_id', 'role', 'content', 'metadata', 'tags', 'source_id', 'created_at'] as const

const PAGE = 500
const DEFAULT_RETRY_DELAYS_MS = [500, 1_000, 2_000, 5_000]

export class MemoryExportError extends Error {
  override name = 'MemoryExportError'
}

export function exportLine(memory: Memory): string {
  const ordered: Record<string, unknown> = {}
  for (const field of EXPORTED_FIELDS) ordered[field] = memory[field]
  return `${JSON.stringify(ordered)}\n`
}

export async function exportMemories(options: MemoryExportOptions): Promise<{ exported: number }> {
  const base = options.url.endsWith('/') ? options.url : `${options.url}/`
  const headers = options.apiKey === undefined ? undefined : { authorization: `Bearer ${options.apiKey}` }
  const retryDelays = options.retryDelaysMs ?? DEFAULT_RETRY_DELAYS_MS

  async function get<T>(path: string, query: Record<string, string | undefined>): Promise<T> {
    const url = new URL(path, base)
    for (const [name, value] of Object.entries(query)) if (value !== undefined) url.searchParams.set(name, value)
    for (let attempt = 0; ; attempt++) {
      let response: Response
      try {
        response = await fetch(url, { headers, signal: AbortSignal.timeout(60_000) })
      } catch (error) {
        if (attempt < retryDelays.length && (error as Error).name === 'TimeoutError') {
          await sleep(retryDelays[attempt]!)
          continue
        }
        const cause = (error as { cause?: { code?: string } }).cause?.code
        throw new MemoryExportError(`cannot reach Sage at ${options.url}: ${(error as Error).message}${cause ? ` (${cause})` : ''}`, { cause: error })
      }
      const text = await response.text()
      if (response.status === 200) return JSON.parse(text) as T
      if ((response.status === 429 || response.status >= 500) && attempt < retryDelays.length) {
        const retryAfter = Number(response.headers.get('retry-after'))
        await sleep(Number.isFinite(retryAfter) && retryAfter > 0 ? Math.min(retryAfter * 1000, 60_000) : retryDelays[attempt]!)
        continue
      }
      const hint = response.status === 401 || response.status === 403 ? '; pass a key that covers the namespace with --key-env or SAGE_API_KEY' : ''
      throw new MemoryExportError(`GET ${url.pathname} answered ${response.status}: ${errorMessage(text, response.status)}${hint}`)
    }
  }

  let total: number | undefined
  if (options.sessionId !== undefined) {
    const { items } = await get<{ items: Array<{ session_id: string; count: number }> }>('v1/sessions', { namespace: options.namespace, limit: '1000' })
    total = items.find((session) => session.session_id === options.sessionId)?.count ?? 0
  }
  let exported = 0
  let cursor: string | undefined
  do {
    const page = await get<{ items: Memory[]; next_cursor: string | null }>('v1/memories', {
      namespace: options.namespace,
      session_id: options.sessionId,
      limit: String(PAGE),
      cursor
    })
    for (const memory of page.items) await options.write(exportLine(memory))
    exported += page.items.length
    options.onProgress?.(exported, total)
    cursor = page.next_cursor ?? undefined
  } while (cursor !== undefined)
  return { exported }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))
