import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, test } from 'node:test'
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
