import pg from 'pg'

export interface SaveReply {
  status: number
  /** Ids the service answered with (for a 202: the ids it queued). */
  ids: string[]
}

const HEADERS = { 'content-type': 'application/json', prefer: 'respond-async' }

/** One asynchronous save of `count` memories (a single save when count is 1, else a batch) with contents `${tag}-i`. */
export async function saveAsync(baseUrl: string, tag: string, count = 1): Promise<SaveReply> {
  const single = count === 1
  const res = await fetch(`${baseUrl}/v1/memories${single ? '' : '/batch'}`, {
    method: 'POST',
    headers: HEADERS,
    body: JSON.stringify(single ? { namespace: 'load', content: `${tag}-0` } : { items: Array.from({ length: count }, (_, i) => ({ namespace: 'load', content: `${tag}-${i}` })) })
  })
  const text = await res.text()
  if (res.status !== 201 && res.status !== 202 && res.status !== 200) return { status: res.status, ids: [] }
  const body = JSON.parse(text) as { id?: string; items?: Array<{ id: string }> }
  return { status: res.status, ids: body.id ? [body.id] : (body.items ?? []).map((item) => item.id) }
}

/** Runs `worker(i)` for i = 0..total-1 with at most `concurrency` in flight. */
export async function inParallel(total: number, concurrency: number, worker: (i: number) => Promise<void>): Promise<void> {
  let next = 0
  await Promise.all(
    Array.from({ length: Math.min(concurrency, total) }, async () => {
      while (next < total) await worker(next++)
    })
  )
}

/** What the store holds: every row, its distinct ids and contents. */
export async function storedMemories(databaseUrl: string): Promise<{ rows: number; ids: Set<string>; contents: number }> {
  const client = new pg.Client({ connectionString: databaseUrl })
  await client.connect()
  try {
    const { rows } = await client.query<{ id: string }>('SELECT id FROM memories')
    const { rows: [distinct] } = await client.query<{ n: number }>('SELECT count(DISTINCT content)::int AS n FROM memories')
    return { rows: rows.length, ids: new Set(rows.map((row) => row.id)), contents: distinct!.n }
  } finally {
    await client.end()
  }
}

/** A value of a counter in a Prometheus exposition, 0 when absent. */
export function counterValue(exposition: string, series: string): number {
  const escaped = series.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')
  const match = new RegExp(`^${escaped} (\\S+)$`, 'm').exec(exposition)
  return match ? Number(match[1]) : 0
}
