/** What the commands ask a running Sage before they rely on it: does it answer, and who is this key to it. */

export interface SageAccess {
  keys_required: boolean
  key: string | null
  scopes: string[]
  can_delete: boolean
}

export type Probe =
  | { reachable: false; problem: string }
  | { reachable: true; ready: boolean; access: SageAccess | 'key required' | 'key refused'; problem?: string }

const DEFAULT_TIMEOUT_MS = 3_000

async function get(url: string, key: string | undefined, timeoutMs: number): Promise<Response> {
  return fetch(url, { headers: key ? { authorization: `Bearer ${key}` } : {}, signal: AbortSignal.timeout(timeoutMs) })
}

/** GET /health, /health/ready and /v1/access at `baseUrl`; never throws. */
export async function probeSage(baseUrl: string, key?: string, timeoutMs = DEFAULT_TIMEOUT_MS): Promise<Probe> {
  const base = baseUrl.replace(/\/+$/, '')
  try {
    const health = await get(`${base}/health`, undefined, timeoutMs)
    const body = (await health.json().catch(() => ({}))) as { status?: string }
    if (!health.ok || body.status !== 'ok') return { reachable: false, problem: `${base}/health answered ${health.status}, not Sage's {"status": "ok"}` }
  } catch (error) {
    const cause = (error as { cause?: { code?: string } }).cause?.code ?? (error as Error).name
    return { reachable: false, problem: `nothing answers at ${base} (${cause})` }
  }
  const ready = await get(`${base}/health/ready`, undefined, timeoutMs).then((r) => r.ok, () => false)
  try {
    const res = await get(`${base}/v1/access`, key, timeoutMs)
    if (res.status === 401) return { reachable: true, ready, access: key ? 'key refused' : 'key required' }
    if (!res.ok) return { reachable: true, ready, access: 'key refused', problem: `/v1/access answered ${res.status}` }
    return { reachable: true, ready, access: (await res.json()) as SageAccess }
  } catch (error) {
    return { reachable: true, ready, access: 'key refused', problem: `/v1/access failed: ${(error as Error).message}` }
  }
}
