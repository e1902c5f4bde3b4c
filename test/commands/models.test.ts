import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, test } from 'node:test'
import { startModelHub, type ModelHub } from '../support/model-hub.js'
import { runSage, startSage } from '../support/sage-process.js'
import { writeTestModel, type TestModel } from '../support/test-model.js'

/** A start creates and migrates an embedded store and loads a model: on a loaded 2-core machine, tens of seconds. */
const START_TIMEOUT_MS = 120_000

const MODEL_ID = 'sage-tests/tiny-embedder'

describe('sage-memory models, and a service started on a local model', () => {
  let work: string
  let model: TestModel
  let hub: ModelHub
  let env: Record<string, string>

  before(async () => {
    work = await mkdtemp(join(tmpdir(), 'sage-models-'))
    model = await writeTestModel(join(work, 'model'))
    hub = await startModelHub({ [MODEL_ID]: model.dir })
    env = { SAGE_DATA_DIR: join(work, 'data'), EMBEDDING_LOCAL_HUB_URL: hub.url, EMBEDDING_PROVIDER: 'local', EMBEDDING_MODEL: MODEL_ID }
  })
  after(async () => {
    await hub.close()
    await rm(work, { recursive: true, force: true })
  })

  test('the start refuses a model that is not in the cache, naming the variable and how to get it, and downloads nothing', async () => {
    const start = await runSage(['serve'], { ...env, PORT: '0' }, START_TIMEOUT_MS)
    assert.equal(start.code, 1, start.stdout + start.stderr)
    assert.match(start.stderr, new RegExp(`sage-memory: EMBEDDING_MODEL=${MODEL_ID} \\(fp32 weights\\) is not in the model cache .*sage-memory models pull ${MODEL_ID}`))
    assert.equal(hub.requests.length, 0)
  })

  test('models list says the cache is empty; pull downloads with a progress bar, then list shows the model', async () => {
    const empty = await runSage(['models', 'list'], env)
    assert.equal(empty.code, 0)
    assert.match(empty.stdout, new RegExp(`no models in .*sage-memory models pull ${MODEL_ID}`))

    const pulled = await runSage(['models', 'pull'], env)
    assert.equal(pulled.code, 0, pulled.stderr)
    assert.match(pulled.stderr, new RegExp(`${MODEL_ID} \\[[^\\]]+\\] 100% `))
    assert.match(pulled.stdout, new RegExp(`${MODEL_ID} is now in ${join(work, 'data', 'models')} .*vectors of 24 dimensions`))
    assert.equal(hub.downloads().length, model.files.length)

    const again = await runSage(['models', 'pull', MODEL_ID], env)
    assert.equal(again.code, 0, again.stderr)
    assert.match(again.stdout, /was already in/)
    assert.equal(hub.downloads().length, model.files.length, 'a cached model is not downloaded again')

    const listed = await runSage(['models', 'list'], env)
    assert.match(listed.stdout, new RegExp(`${MODEL_ID}  \\d+\\.\\d [kM]B  model\\.onnx  \\(EMBEDDING_MODEL\\)`))
    const json = JSON.parse((await runSage(['models', 'list', '--json'], env)).stdout) as Array<{ id: string; weights: string[]; configured: boolean }>
    assert.deepEqual(json.map(({ id, weights, configured }) => ({ id, weights, configured })), [{ id: MODEL_ID, weights: ['model.onnx'], configured: true }])
  })

  test('pulling a model the hub does not have fails with what happened; a folder has nothing to pull', async () => {
    const missing = await runSage(['models', 'pull', 'sage-tests/no-such-model'], env)
    assert.equal(missing.code, 1)
    assert.match(missing.stderr, /sage-tests\/no-such-model: http:\/\/127\.0\.0\.1:\d+ has no such model/)
    const folder = await runSage(['models', 'pull', model.dir], env)
    assert.equal(folder.code, 2)
    assert.match(folder.stderr, /is a folder: Sage loads it where it is/)
  })

  test('once pulled, the service starts with the hub gone, and saves and recalls by meaning', async () => {
    await hub.close()
    const sage = await startSage(env, START_TIMEOUT_MS)
    try {
      const ready = (await (await fetch(`${sage.url}/health/ready`)).json()) as { checks: { embedder: { status: string } } }
      assert.equal(ready.checks.embedder.status, 'ok', JSON.stringify(ready))
      const saved = await fetch(`${sage.url}/v1/memories`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ namespace: 'ops', content: 'Rotate the API keys monthly' })
      })
      assert.equal(saved.status, 201)
      await fetch(`${sage.url}/v1/memories`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ namespace: 'ops', content: 'The ledger export uses keyset pagination' })
      })
      const recall = await fetch(`${sage.url}/v1/recall`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ namespace: 'ops', query: 'how often do we renew credentials', mode: 'vector', k: 1 })
      })
      const { results } = (await recall.json()) as { results: Array<{ content: string }> }
      assert.equal(results[0]?.content, 'Rotate the API keys monthly')
    } finally {
      assert.equal(await sage.stop(), 0, sage.output())
    }
    hub = await startModelHub({ [MODEL_ID]: model.dir })
  })

  test('a start told it may download (EMBEDDING_LOCAL_DOWNLOAD=true) fetches the model once, saying so, and serves', async () => {
    const fresh = { ...env, EMBEDDING_LOCAL_HUB_URL: hub.url, SAGE_DATA_DIR: join(work, 'fresh'), EMBEDDING_LOCAL_DOWNLOAD: 'true', LOG_LEVEL: 'info' }
    const sage = await startSage(fresh, START_TIMEOUT_MS)
    try {
      assert.equal(hub.downloads().length, model.files.length)
      assert.match(sage.output(), /downloading the embedding model \(EMBEDDING_LOCAL_DOWNLOAD=true\)/)
      const listed = await runSage(['models', 'list'], fresh)
      assert.match(listed.stdout, new RegExp(`${MODEL_ID} .*\\(EMBEDDING_MODEL\\)`))
    } finally {
      assert.equal(await sage.stop(), 0, sage.output())
    }
  })
})
