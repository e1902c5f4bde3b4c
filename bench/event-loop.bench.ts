/**
 * How long large legal bodies hold up everybody else: a running service gets 10 MB batches (100 items of 100,000
 * random base64 characters) and 9.4 MB hook prompts from 4 connections, while a probe asks /health every 10 ms on a
 * fixed schedule from its own thread. Reports the probe's latencies and the service's own event-loop delay
 * (nodejs_eventloop_lag_* from /metrics, scraped before and after, so it covers the load alone).
 *
 *   npx tsx bench/event-loop.bench.ts [--batches 3] [--hooks 3] [--hook-chars 9400000] [--store pglite|postgres]
 *
 * --store postgres reads DATABASE_URL. Without a build, the service runs from source through tsx.
 */
import { randomBytes } from 'node:crypto'
import { request } from 'node:http'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { startProbe } from '../test/support/event-loop-probe.js'
import { startService } from './service.js'

export function randomBase64(chars: number): string {
  return randomBytes(Math.ceil((chars * 3) / 4)).toString('base64').slice(0, chars)
}

/** The service's event-loop delay since the previous scrape (prom-client resets its histogram on every scrape). */
export async function eventLoopLag(url: string): Promise<{ p50: number; p99: number; max: number }> {
  const text = await (await fetch(`${url}/metrics`)).text()
  const read = (name: string) => Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(text)?.[1] ?? NaN) * 1000
  return { p50: read('nodejs_eventloop_lag_p50_seconds'), p99: read('nodejs_eventloop_lag_p99_seconds'), max: read('nodejs_eventloop_lag_max_seconds') }
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      batches: { type: 'string', default: '3' },
      hooks: { type: 'string', default: '3' },
      'hook-chars': { type: 'string', default: '9400000' },
      store: { type: 'string', default: 'pglite' }
    }
  })
  const dataDir = await mkdtemp(join(tmpdir(), 'sage-event-loop-'))
  const service = await startService({
    databaseUrl: values.store === 'postgres' ? process.env.DATABASE_URL : undefined,
    dataDir,
    logFile: join(dataDir, 'service.log')
  })
  try {
    const batch = JSON.stringify({ items: Array.from({ length: 100 }, (_, i) => ({ namespace: 'bench-event-loop', content: randomBase64(100_000), source_id: `b-${i}-${Date.now()}` })) })
    const hookBody = (n: number) => JSON.stringify({
      hook_event_name: 'UserPromptSubmit', session_id: `s-${n}`, cwd: '/tmp/bench-event-loop', prompt_id: `p-${n}-${Date.now()}`, prompt: randomBase64(Number(values['hook-chars']))
    })
    await eventLoopLag(service.url)
    const probe = startProbe(`${service.url}/health`, 10)
    const started = performance.now()
    const batchTimes: number[] = []
    for (let i = 0; i < Number(values.batches); i++) {
      const t = performance.now()
      const { status } = await postJson(`${service.url}/v1/memories/batch`, batch.replaceAll('"source_id":"b-', `"source_id":"b${i}-`))
      if (status !== 201) throw new Error(`batch answered ${status}`)
      batchTimes.push(performance.now() - t)
    }
    const batchLag = await eventLoopLag(service.url)
    const hookTimes: number[] = []
    const bodies = Array.from({ length: 4 }, (_, c) => hookBody(c))
    await Promise.all(bodies.map(async (body, c) => {
      for (let i = 0; i < Number(values.hooks); i++) {
        const t = performance.now()
        await postJson(`${service.url}/hooks/claude-code`, body.replace(`"prompt_id":"p-${c}-`, `"prompt_id":"p-${c}-${i}-`))
        hookTimes.push(performance.now() - t)
      }
    }))
    const lag = await eventLoopLag(service.url)
    const health = await probe.stop()
    const ms = (n: number) => `${n.toFixed(1)} ms`
    console.log(`store ${values.store}; ${values.batches} batches of 100 x 100,000 chars, then 4 connections x ${values.hooks} hook prompts of ${values['hook-chars']} chars; ${ms(performance.now() - started)} in all`)
    console.log(`batch requests: ${batchTimes.map(ms).join(', ')}`)
    console.log(`hook answers: p50 ${ms(percentile(hookTimes, 50))}, max ${ms(Math.max(...hookTimes))}`)
    console.log(`/health every 10 ms (${health.length} probes): p50 ${ms(percentile(health, 50))}, p99 ${ms(percentile(health, 99))}, max ${ms(Math.max(...health))}`)
    console.log(`service event-loop delay (nodejs_eventloop_lag_*) during the batches: p50 ${ms(batchLag.p50)}, p99 ${ms(batchLag.p99)}, max ${ms(batchLag.max)}`)
    console.log(`service event-loop delay during the hook prompts: p50 ${ms(lag.p50)}, p99 ${ms(lag.p99)}, max ${ms(lag.max)}`)
  } finally {
    await service.stop()
    await rm(dataDir, { recursive: true, force: true })
  }
}

/**
 * The status and body of a POST (status 0 when the body was refused unread). node:http rather than fetch: fetch gives
 * up connecting after 10 s, and a stalled service takes longer than that to accept.
 */
export function postJson(url: string, body: string, headers: Record<string, string> = {}): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method: 'POST', headers: { 'content-type': 'application/json', ...headers } }, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (chunk: Buffer) => chunks.push(chunk))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString() }))
    })
    // A body past its limit is refused before it is read, and the socket closed under the rest.
    req.on('error', (error: NodeJS.ErrnoException) => (error.code === 'EPIPE' || error.code === 'ECONNRESET' ? resolve({ status: 0, body: '' }) : reject(error)))
    req.end(body)
  })
}

export function percentile(values: readonly number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] ?? NaN
}

if (import.meta.url === `file://${process.argv[1]}`) await main()
