import type { Workload } from './workload.js'

export interface FillPlan {
  namespace: string
  count: number
}

export interface FillResult {
  items: number
  seconds: number
  itemsPerSecond: number
}

/** Writes the planned memories through POST /v1/memories/batch, `concurrency` batches in flight at a time. */
export async function fill(url: string, workload: Workload, plan: readonly FillPlan[], options: { batchSize: number; concurrency: number }): Promise<FillResult> {
  const batches: FillPlan[] = []
  for (const { namespace, count } of plan) {
    for (let done = 0; done < count; done += options.batchSize) batches.push({ namespace, count: Math.min(options.batchSize, count - done) })
  }
  // Spread the namespaces through the run, as several projects writing at once would.
  const order = interleave(batches)

  let nextBatch = 0
  let items = 0
  const started = performance.now()
  const worker = async () => {
    while (nextBatch < order.length) {
      const { namespace, count } = order[nextBatch++] as FillPlan
      const body = JSON.stringify({ items: Array.from({ length: count }, () => workload.item(namespace)) })
      const response = await fetch(`${url}/v1/memories/batch`, { method: 'POST', headers: { 'content-type': 'application/json' }, body })
      const text = await response.text()
      if (response.status !== 201) throw new Error(`filling ${namespace}: POST /v1/memories/batch answered ${response.status} ${text.slice(0, 300)}`)
      items += count
    }
  }
  await Promise.all(Array.from({ length: options.concurrency }, worker))
  const seconds = (performance.now() - started) / 1000
  return { items, seconds, itemsPerSecond: items / seconds }
}

/** Round-robin over the namespaces' batches, keeping each namespace's own order. */
function interleave(batches: readonly FillPlan[]): FillPlan[] {
  const queues = new Map<string, FillPlan[]>()
  for (const batch of batches) {
    const queue = queues.get(batch.namespace) ?? []
    queue.push(batch)
    queues.set(batch.namespace, queue)
  }
  const out: FillPlan[] = []
  const lists = [...queues.values()]
  // The largest namespace sets the pace; the small ones are spread evenly through it.
  const longest = Math.max(0, ...lists.map((list) => list.length))
  for (let step = 0; step < longest; step++) {
    for (const list of lists) {
      const index = Math.floor((step * list.length) / longest)
      const previous = Math.floor(((step - 1) * list.length) / longest)
      if (step === 0 || index !== previous) {
        const batch = list[index]
        if (batch) out.push(batch)
      }
    }
  }
  return out
}
