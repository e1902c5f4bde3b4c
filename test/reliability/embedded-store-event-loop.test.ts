import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { mkdtemp, rm } from 'node:fs/promises'
import { request } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, test } from 'node:test'
import { getText as read, percentile, serviceEventLoopDelay as eventLoopDelay, startProbe } from '../support/event-loop-probe.js'
import { processStore } from '../support/process-store.js'
import { startSage } from '../support/sage-process.js'

const randomBase64 = (chars: number) => randomBytes(Math.ceil((chars * 3) / 4)).toString('base64').slice(0, chars)

/** node:http, not fetch: fetch stops connecting after 10 s, and a stalled server (the failure under test) takes longer. */
function post(url: string, body: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method: 'POST', headers: { 'content-type': 'application/json' } }, (res) => {
      let text = ''
      res.setEncoding('utf8').on('data', (chunk: string) => (text += chunk)).on('end', () => resolve({ status: res.statusCode ?? 0, body: text }))
    })
    req.on('error', reject)
    req.end(body)
  })
}

describe('the service as a process on the embedded store, under a 10 MB batch', () => {
  // PGlite works synchronously; in the service's own thread a batch like this held the event loop for seconds.
  test('the event loop stays free for other requests while the batch is saved', { timeout: 600_000 }, async (t) => {
    const dataDir = await mkdtemp(join(tmpdir(), 'sage-embedded-event-loop-'))
    t.after(() => rm(dataDir, { recursive: true, force: true }))
    const store = await processStore({ store: 'pglite', dataDir })
    // After the batch, the backfill and the term statistics take the new rows in statements of up to a minute here,
    // which a shutdown waits out: a grace to match, so that the exit code speaks of the event loop alone.
    const sage = await startSage({ ...store.env, RATE_LIMIT_MAX: '0', SHUTDOWN_GRACE_MS: '300000' }, 120_000)
    try {
      const batch = JSON.stringify({
        items: Array.from({ length: 100 }, (_, i) => ({ namespace: 'event-loop', content: randomBase64(100_000), source_id: `batch-${i}` }))
      })
      await eventLoopDelay(sage.url)
      const probe = startProbe(`${sage.url}/health`, 10)
      const answer = await post(`${sage.url}/v1/memories/batch`, batch)
      const delay = await eventLoopDelay(sage.url)
      const health = await probe.stop()

      assert.equal(answer.status, 201, answer.body.slice(0, 300))
      const p99 = percentile(health, 99)
      const figures = `service event-loop delay p99 ${delay.p99.toFixed(1)} ms, max ${delay.max.toFixed(1)} ms; ` +
        `/health every 10 ms: ${health.length} probes, p99 ${p99.toFixed(1)} ms, max ${Math.max(...health).toFixed(1)} ms`
      // The 50 ms target is the benchmark's to judge (BENCHMARKS.md); here, on 2 loaded cores, a margin. The delay
      // measure has one sample per turn of the loop, so one long stall is one sample: the maximum catches it.
      assert.ok(delay.p99 < 150, figures)
      assert.ok(delay.max < 2_000, figures)
      // Probes on a fixed schedule weigh a stall by its length: in one thread, the batch kept them waiting for seconds.
      assert.ok(p99 < 2_000, figures)
    } finally {
      assert.equal(await sage.stop('SIGTERM'), 0, sage.output())
      await store.drop()
    }
  })

  test('a shutdown past its grace, mid-batch, closes the store between statements: the next start opens it, with the batch whole or absent', { timeout: 600_000 }, async (t) => {
    const dataDir = await mkdtemp(join(tmpdir(), 'sage-embedded-grace-'))
    t.after(() => rm(dataDir, { recursive: true, force: true }))
    const store = await processStore({ store: 'pglite', dataDir })
    try {
      const sage = await startSage({ ...store.env, RATE_LIMIT_MAX: '0', SHUTDOWN_GRACE_MS: '200' }, 120_000)
      const items = Array.from({ length: 30 }, (_, i) => ({ namespace: 'grace', content: randomBase64(100_000), source_id: `grace-${i}` }))
      const answer = post(`${sage.url}/v1/memories/batch`, JSON.stringify({ items })).catch((error: Error) => ({ status: 0, body: error.message }))
      // Into its statements: the batch's inserts take seconds on PGlite.
      await new Promise((resolve) => setTimeout(resolve, 1_500))
      assert.equal(await sage.stop('SIGTERM'), 1, sage.output())
      assert.match(sage.output(), /requests still running after SHUTDOWN_GRACE_MS/)
      await answer

      const again = await startSage({ ...store.env, RATE_LIMIT_MAX: '0' }, 120_000)
      try {
        const stored = JSON.parse(await read(`${again.url}/v1/memories?namespace=grace&limit=100`)) as { items: unknown[] }
        assert.ok(stored.items.length === 0 || stored.items.length === items.length, `${stored.items.length} of the batch's ${items.length} items stored`)
      } finally {
        assert.equal(await again.stop('SIGTERM'), 0, again.output())
      }
    } finally {
      await store.drop()
    }
  })
})
