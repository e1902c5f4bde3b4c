import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { request } from 'node:http'
import { describe, test } from 'node:test'
import { backends } from '../helper.js'
import { percentile, serviceEventLoopDelay as eventLoopDelay, startProbe } from '../support/event-loop-probe.js'
import { useListeningApp } from '../support/listening-app.js'

const randomBase64 = (chars: number) => randomBytes(Math.ceil((chars * 3) / 4)).toString('base64').slice(0, chars)

/**
 * node:http, not fetch: fetch stops connecting after 10 s, and a stalled server (the failure under test) takes longer.
 * A body past its limit is refused before it is read, and the socket closed under the rest: status 0.
 */
function post(url: string, body: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method: 'POST', headers: { 'content-type': 'application/json' } }, (res) => {
      let text = ''
      res.setEncoding('utf8').on('data', (chunk: string) => (text += chunk)).on('end', () => resolve({ status: res.statusCode ?? 0, body: text }))
    })
    req.on('error', (error: NodeJS.ErrnoException) => {
      if (error.code === 'EPIPE' || error.code === 'ECONNRESET') resolve({ status: 0, body: `closed (${error.code})` })
      else reject(error)
    })
    req.end(body)
  })
}

for (const backend of backends()) {
  describe(`large legal bodies and the event loop on ${backend.name}`, () => {
    const suite = useListeningApp(backend, { RATE_LIMIT_MAX: 0 }, { backfill: false, vectorIndexer: false, termStatisticsFolder: false })

    // On PGlite the same batch takes minutes to insert; test/reliability/embedded-store-event-loop.test.ts covers it there.
    const skip = backend.name === 'pglite' && 'covered for the embedded store by test/reliability/embedded-store-event-loop.test.ts'
    test('10 MB batches and hook bodies as large as allowed leave the event loop free for other requests', { skip, timeout: 600_000 }, async () => {
      const { url } = suite
      const batch = (n: number) => JSON.stringify({
        items: Array.from({ length: 100 }, (_, i) => ({ namespace: 'event-loop', content: randomBase64(100_000), source_id: `batch-${n}-${i}` }))
      })
      const batches = [batch(0), batch(1)]
      // A prompt as long as HOOK_BODY_LIMIT_BYTES takes, which is cut and saved; and one of 9 MB, past it.
      const hook = (connection: number, chars: number) => JSON.stringify({
        hook_event_name: 'UserPromptSubmit', session_id: `s-${connection}`, cwd: '/tmp/event-loop', prompt_id: `p-${connection}-${chars}`,
        prompt: randomBase64(chars)
      })
      const hooks = [0, 1, 2, 3].map((connection) => [hook(connection, 2_000_000), hook(connection, 9_000_000)])

      await eventLoopDelay(url)
      const probe = startProbe(`${url}/health`, 10)
      const [batchAnswers, hookAnswers] = await Promise.all([
        (async () => {
          const answers = []
          for (const body of batches) answers.push(await post(`${url}/v1/memories/batch`, body))
          return answers
        })(),
        Promise.all(hooks.map(async (bodies) => {
          const answers = []
          for (const body of bodies) answers.push(await post(`${url}/hooks/claude-code?namespace=event-loop`, body))
          return answers
        }))
      ])
      const delay = await eventLoopDelay(url)
      const health = await probe.stop()

      for (const answer of batchAnswers) assert.equal(answer.status, 201, answer.body.slice(0, 300))
      for (const [withinLimit, pastLimit] of hookAnswers) {
        assert.equal(withinLimit!.status, 200, withinLimit!.body.slice(0, 300))
        assert.ok([0, 200].includes(pastLimit!.status), pastLimit!.body.slice(0, 300))
      }
      const p99 = percentile(health, 99)
      const figures = `service event-loop delay p99 ${delay.p99.toFixed(1)} ms, max ${delay.max.toFixed(1)} ms; ` +
        `/health every 10 ms: ${health.length} probes, p99 ${p99.toFixed(1)} ms`
      // The 50 ms target is the benchmark's to judge (BENCHMARKS.md); here, beside other test files on 2 cores, a
      // margin. The measure has one sample per turn of the loop, so one long stall is one sample: the maximum and the
      // probes are what catch a blocked loop.
      assert.ok(delay.p99 < 150, figures)
      assert.ok(delay.max < 2_000, figures)
      // Probes sent on a fixed schedule weigh a stall by its length; they share 2 loaded cores with everything else
      // (1.3 s at p99 seen under a load average of 11; 13.5 s before the worker pool), hence the wide bound.
      assert.ok(p99 < 5_000, figures)
      const { rows } = await suite.store.db.query<{ n: number; cut: number }>(
        "SELECT count(*)::int AS n, count(*) FILTER (WHERE metadata->>'truncated' = 'true')::int AS cut FROM memories WHERE namespace = 'event-loop'"
      )
      assert.equal(rows[0]!.n - rows[0]!.cut, 200, 'every batch item is saved')
      assert.equal(rows[0]!.cut, 4, 'each prompt within the body limit is saved, cut')
    })
  })
}
