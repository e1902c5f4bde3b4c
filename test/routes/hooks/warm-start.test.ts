import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, test } from 'node:test'
import { processStore } from '../../support/process-store.js'
import { startSage, type SageProcess } from '../../support/sage-process.js'
import { waitFor } from '../../support/wait-for.js'

/** A start migrates and opens a store: on a loaded 2-core machine, tens of seconds. */
const START_TIMEOUT_MS = 120_000

let work: string
before(async () => {
  work = await mkdtemp(join(tmpdir(), 'sage-warm-'))
})
after(() => rm(work, { recursive: true, force: true }))

const post = (sage: SageProcess, path: string, body: unknown) =>
  fetch(`${sage.url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })

for (const store of ['pglite', 'postgres'] as const) {
  test(`on ${store}, the first UserPromptSubmit after a start answers with its context within the hook's deadline`, {
    skip: store === 'postgres' && !process.env.TEST_DATABASE_URL && !process.env.CI ? 'TEST_DATABASE_URL is not set' : false
  }, async (t) => {
    const { env, drop } = await processStore({ store, dataDir: join(work, 'data') })
    t.after(drop)

    const first = await startSage(env, START_TIMEOUT_MS)
    try {
      const items = Array.from({ length: 300 }, (_, i) => ({
        namespace: 'billing', session_id: `earlier-${i % 10}`, role: 'assistant',
        content: `We switched the ledger export of batch ${i} to keyset pagination, pages of 5,000 rows, and streamed the CSV.`
      }))
      assert.equal((await post(first, '/v1/memories/batch', { items })).status, 201)
      // Settled before it stops, so the next start has only itself to warm (not a backlog to index).
      await waitFor('the vectors indexed and the terms counted', async () => {
        const metrics = await (await fetch(`${first.url}/metrics`)).text()
        return /^sage_vector_backlog 0$/m.test(metrics)
      }, START_TIMEOUT_MS, 250)
    } finally {
      assert.equal(await first.stop(), 0, first.output())
    }

    // Two starts, as a user's day has them: each first hook must be answered, not the deadline's `{}`.
    for (const round of [1, 2]) {
      const sage = await startSage({ ...env, LOG_LEVEL: 'info' }, START_TIMEOUT_MS)
      try {
        const res = await post(sage, '/hooks/claude-code', {
          hook_event_name: 'UserPromptSubmit', session_id: `now-${round}`, prompt_id: `p-${round}`, cwd: '/src/billing',
          prompt: 'how do we paginate the ledger export?'
        })
        assert.equal(res.status, 200)
        const answer = (await res.json()) as { hookSpecificOutput?: { additionalContext: string } }
        assert.match(answer.hookSpecificOutput?.additionalContext ?? '', /keyset pagination/, `start ${round}: the first hook missed its deadline:\n${sage.output()}`)
        // Readiness came after the warm-up: nothing was served before it.
        const output = sage.output()
        assert.ok(output.indexOf('"warmed up"') >= 0 && output.indexOf('"warmed up"') < output.indexOf('Sage is serving: ready'), output)
        assert.equal((await fetch(`${sage.url}/health/ready`)).status, 200)
      } finally {
        assert.equal(await sage.stop(), 0, sage.output())
      }
    }
  })
}
