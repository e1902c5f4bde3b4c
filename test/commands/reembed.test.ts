import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, test } from 'node:test'
import { processStore } from '../support/process-store.js'
import { runSage, startSage, type SageProcess } from '../support/sage-process.js'
import { writeTestModel, type TestModel } from '../support/test-model.js'
import { waitFor } from '../support/wait-for.js'

/** A start creates and migrates an embedded store and loads a model: on a loaded 2-core machine, tens of seconds. */
const START_TIMEOUT_MS = 120_000

let work: string
let model: TestModel
before(async () => {
  work = await mkdtemp(join(tmpdir(), 'sage-reembed-'))
  model = await writeTestModel(join(work, 'model'))
})
after(() => rm(work, { recursive: true, force: true }))

const post = (sage: SageProcess, path: string, body: unknown) =>
  fetch(`${sage.url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })

test('sage-memory reembed moves a store from the lexical embedder to a local model, which the service then fills in', async () => {
  const data = { SAGE_DATA_DIR: join(work, 'data') }
  const local = { ...data, EMBEDDING_PROVIDER: 'local', EMBEDDING_MODEL: model.dir, BACKFILL_INTERVAL_MS: '100' }

  const lexical = await startSage(data, START_TIMEOUT_MS)
  try {
    assert.equal((await post(lexical, '/v1/memories', { namespace: 'ops', content: 'Rotate the API keys monthly' })).status, 201)
  } finally {
    assert.equal(await lexical.stop(), 0, lexical.output())
  }

  const refused = await runSage(['serve'], { ...local, PORT: '0' }, START_TIMEOUT_MS)
  assert.equal(refused.code, 1, 'a store of lexical vectors must not be served with a local model')
  assert.match(refused.stderr, /embedded by "lexical-v1\/384".*sage-memory reembed/s)

  const { stdout } = await runSage(['reembed'], local)
  assert.match(stdout, new RegExp(`store now bound to local:${model.dir}:fp32:mean/24; 1 memories will be re-embedded`))

  const sage = await startSage(local, START_TIMEOUT_MS)
  try {
    const found = await waitFor('the memory re-embedded and found by meaning', async () => {
      const res = await post(sage, '/v1/recall', { namespace: 'ops', query: 'how often do we renew credentials', mode: 'vector', k: 1 })
      return res.status === 200 && ((await res.json()) as { results: unknown[] }).results.length === 1
    }, START_TIMEOUT_MS)
    assert.ok(found)
  } finally {
    assert.equal(await sage.stop(), 0, sage.output())
  }
})

for (const store of ['pglite', 'postgres'] as const) {
  test(`sage-memory reembed while the service runs on ${store}: the service re-embeds every memory while saves and recalls go on`, {
    skip: store === 'postgres' && !process.env.TEST_DATABASE_URL && !process.env.CI ? 'TEST_DATABASE_URL is not set' : false
  }, async (t) => {
    const { env, drop } = await processStore({ store, dataDir: join(work, 'live') })
    t.after(drop)
    const sage = await startSage({ ...env, BACKFILL_INTERVAL_MS: '100' }, START_TIMEOUT_MS)
    try {
      const memories = Array.from({ length: 40 }, (_, i) => ({ namespace: 'live', content: `decision ${i}: the ledger export uses keyset pagination number ${i}` }))
      assert.equal((await post(sage, '/v1/memories/batch', { items: memories })).status, 201)
      const withVectors = async () => {
        const res = await post(sage, '/v1/recall', { namespace: 'live', query: 'ledger export keyset pagination', mode: 'vector', k: 50 })
        assert.equal(res.status, 200)
        return ((await res.json()) as { results: unknown[] }).results.length
      }
      assert.equal(await withVectors(), 40)

      // Saves and recalls while the command asks the service to re-embed: every one answered.
      let traffic = true
      const statuses: number[] = []
      const load = (async () => {
        for (let i = 0; traffic; i++) {
          statuses.push((await post(sage, '/v1/memories', { namespace: 'live-notes', content: `note ${i} written during the re-embedding` })).status)
          statuses.push((await post(sage, '/v1/recall', { namespace: 'live', query: 'ledger export' })).status)
        }
      })()
      // On the embedded store the command finds the service by its lock; on Postgres it is told where it is.
      const args = store === 'postgres' ? ['reembed', '--url', sage.url] : ['reembed']
      const run = await runSage(args, { ...env, SAGE_URL: sage.url }, START_TIMEOUT_MS)
      assert.equal(run.code, 0, run.stdout + run.stderr)
      const said = new RegExp(`the ${store === 'pglite' ? `running Sage \\(PID ${sage.child.pid}\\)` : 'Sage'} at ${sage.url} cleared (\\d+) vectors and re-embeds every memory with lexical-v1/384`).exec(run.stdout)
      assert.ok(said, run.stdout)
      assert.ok(Number(said[1]) >= 40, 'every vector was cleared')
      await waitFor('every memory re-embedded', async () => (await withVectors()) === 40, START_TIMEOUT_MS, 200)
      traffic = false
      await load
      assert.ok(statuses.length >= 4)
      assert.deepEqual([...new Set(statuses)].sort(), [200, 201], 'saves and recalls kept working')
    } finally {
      assert.equal(await sage.stop(), 0, sage.output())
    }
    // The store is whole: it serves again.
    const again = await startSage(env, START_TIMEOUT_MS)
    try {
      const res = await post(again, '/v1/recall', { namespace: 'live', query: 'ledger export keyset pagination', mode: 'vector', k: 50 })
      assert.equal(((await res.json()) as { results: unknown[] }).results.length, 40)
    } finally {
      assert.equal(await again.stop(), 0, again.output())
    }
  })
}
