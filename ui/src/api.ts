/** Sage's HTTP API as the page uses it; the key lives in this tab's sessionStorage only, never in a URL. */

const KEY_ITEM = 'sage-api-key'

export const storedKey = (): string | null => sessionStorage.getItem(KEY_ITEM)
export const storeKey = (key: string): void => sessionStorage.setItem(KEY_ITEM, key)
export const forgetKey = (): void => sessionStorage.removeItem(KEY_ITEM)

export class ApiError extends Error {
  constructor(readonly status: number, readonly code: string, message: string) {
    super(message)
  }
}

export async function api<T>(path: string, init: { method?: string; body?: unknown; key?: string | null } = {}): Promise<T> {
  const key = init.key === undefined ? storedKey() : init.key
  const headers: Record<string, string> = { accept: 'application/json' }
  if (key) headers.authorization = `Bearer ${key}`
  if (init.body !== undefined) headers['content-type'] = 'application/json'
  let response: Response
  try {
    response = await fetch(path, { method: init.method ?? 'GET', headers, body: init.body === undefined ? undefined : JSON.stringify(init.body), cache: 'no-store' })
  } catch {
    throw new ApiError(0, 'SAGE_UNREACHABLE', 'Sage does not answer; is it running?')
  }
  if (response.status === 204) return undefined as T
  const body = (await response.json().catch(() => ({}))) as Record<string, unknown>
  if (!response.ok) throw new ApiError(response.status, String(body.code ?? 'SAGE_ERROR'), String(body.message ?? response.statusText))
  return body as T
}

export const query = (params: Record<string, string | number | undefined | null>): string => {
  const search = new URLSearchParams()
  for (const [name, value] of Object.entries(params)) if (value !== undefined && value !== null && value !== '') search.set(name, String(value))
  return search.toString()
}

export interface Access {
  keys_required: boolean
  key: string | null
  scopes: string[]
  can_delete: boolean
}

export interface NamespaceSummary {
  namespace: string
  count: number
  roles: Record<string, number>
  last_memory_at: string | null
  last_activity_at: string | null
  saves_24h: number
  recalls_24h: number
}

export interface Memory {
  id: string
  namespace: string
  session_id: string | null
  role: string
  content: string
  metadata: Record<string, unknown>
  tags: string[]
  source_id: string | null
  created_at: string
}

/** A recall hit: the memory and whatever the recall says of it (score, scores, matched terms, …). */
export type RecallHit = Memory & { score: number; scores: Record<string, number | null>; [field: string]: unknown }

export interface SessionSummary {
  session_id: string
  count: number
  first_at: string
  last_at: string
}

export interface TracedHit {
  id: string
  injected: boolean
  rule: string
  score?: number
  scores?: Record<string, number | null>
  memory: Memory | null
  [field: string]: unknown
}

export interface Injection {
  id: string
  created_at: string
  namespace: string
  session_id: string | null
  event: string
  prompt: string | null
  outcome: string
  took_ms: number
  hits: TracedHit[]
}

export const MEMORY_FIELDS: ReadonlySet<string> = new Set(['id', 'namespace', 'session_id', 'role', 'content', 'metadata', 'tags', 'source_id', 'created_at'])
