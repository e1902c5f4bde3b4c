/** What one request of a mixed load saw. */
export interface LoadResult {
  kind: 'save' | 'recall' | 'hook' | 'stop-hook'
  status: number | 'network error'
  retryAfter: string | null
  ms: number
  /** When the answer came (Date.now()). */
  at: number
  /** The id a save's 2xx answer acknowledged. */
  id?: string
}

/** One save, recall, UserPromptSubmit hook or Stop hook against `url`, never throwing. */
export async function mixedRequest(url: string, kind: LoadResult['kind'], n: number, headers: Record<string, string> = {}): Promise<LoadResult> {
  const [path, body] =
    kind === 'save' ? ['/v1/memories', { namespace: 'load', content: `outage drill memory ${n} about the deploy pipeline` }]
    : kind === 'recall' ? ['/v1/recall', { namespace: 'load', query: 'deploy pipeline' }]
    : kind === 'hook' ? ['/hooks/claude-code?namespace=load', { hook_event_name: 'UserPromptSubmit', session_id: 'drill', cwd: '/tmp', prompt: `how does the deploy pipeline work ${n}` }]
    : ['/hooks/claude-code?namespace=load', { hook_event_name: 'Stop', session_id: 'drill', cwd: '/tmp', last_assistant_message: `the deploy pipeline runs in three stages ${n}` }]
  const started = performance.now()
  try {
    const res = await fetch(`${url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) })
    const text = await res.text()
    const id = kind === 'save' && res.status >= 200 && res.status < 300 ? (JSON.parse(text) as { id: string }).id : undefined
    return { kind, status: res.status, retryAfter: res.headers.get('retry-after'), ms: performance.now() - started, at: Date.now(), id }
  } catch {
    return { kind, status: 'network error', retryAfter: null, ms: performance.now() - started, at: Date.now() }
  }
}

/** `concurrency` loops of saves, recalls and hooks in turn until stop() is called; answers everything they saw. */
export function startMixedLoad(url: string, concurrency: number, headers: Record<string, string> = {}) {
  const results: LoadResult[] = []
  let running = true
  let n = 0
  const kinds = ['save', 'recall', 'hook'] as const
  const loops = Array.from({ length: concurrency }, async (_, worker) => {
    for (let i = worker; running; i++) {
      results.push(await mixedRequest(url, kinds[i % 3]!, n++, headers))
      // A refused request is answered in a millisecond: a short pause keeps the loop from spinning.
      await new Promise((resolve) => setTimeout(resolve, 20))
    }
  })
  return {
    results,
    async stop(): Promise<LoadResult[]> {
      running = false
      await Promise.all(loops)
      return results
    }
  }
}

/** Statuses other than 2xx and a 503 that says when to retry. */
export const unexpected = (results: readonly LoadResult[]) =>
  results.filter((r) => !(typeof r.status === 'number' && ((r.status >= 200 && r.status < 300) || (r.status === 503 && r.retryAfter !== null))))
