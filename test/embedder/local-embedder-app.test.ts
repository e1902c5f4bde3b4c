import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, test } from 'node:test'
import type { FastifyInstance } from 'fastify'
import type { Config } from '../../src/config.js'
import { createEmbedder } from '../../src/embedder/create-embedder.js'
import type { Embedder } from '../../src/embedder/embedder.js'
import { LexicalEmbedder } from '../../src/embedder/lexical-embedder.js'
import { OpenAIEmbedder } from '../../src/embedder/openai-embedder.js'
import { bindEmbedder, EmbedderMismatchError, rebindEmbedder } from '../../src/db/embedder-binding.js'
import { backends, buildTestApp, testConfig, type TestStore } from '../helper.js'
import { startEmbeddingServer, type EmbeddingServer } from '../support/embedding-server.js'
import { TEST_MODEL_DIMENSION, writeTestModel, type TestModel } from '../support/test-model.js'

const ORIGINAL = 'Rotate the API keys monthly'
const PARAPHRASE = 'how often do we renew credentials'
const OTHERS = ['The ledger export uses keyset pagination', 'Deploy on friday after the release checks', 'Postgres is slow on the rows table']

for (const backend of backends()) {
  describe(`a local model through the app, on ${backend.name}`, () => {
    let store: TestStore
    let work: string
    let model: TestModel
    let remote: EmbeddingServer
    let local: Partial<Config>
    before(async () => {
      store = await backend.create()
      work = await mkdtemp(join(tmpdir(), 'sage-local-app-'))
      model = await writeTestModel(join(work, 'model'))
      remote = await startEmbeddingServer({ dimension: 64 })
      local = { EMBEDDING_PROVIDER: 'local', EMBEDDING_MODEL: model.dir }
    })
    after(async () => {
      await remote?.close()
      await store?.drop()
      await rm(work, { recursive: true, force: true })
    })

    const save = (app: FastifyInstance, content: string) => app.inject({ method: 'POST', url: '/v1/memories', payload: { namespace: 'ops', content } })
    const recall = async (app: FastifyInstance, query: string, mode: string) => {
      const res = await app.inject({ method: 'POST', url: '/v1/recall', payload: { namespace: 'ops', query, mode, k: 1 } })
      assert.equal(res.statusCode, 200, res.body)
      return (res.json().results as Array<{ content: string }>).map((r) => r.content)
    }
    const embedders = async () => (await store.db.query<{ embedder: string | null }>('SELECT DISTINCT embedder FROM memories')).rows.map((r) => r.embedder)
    const binding = async () => (await store.db.query<{ value: { id: string; dimension: number } }>("SELECT value FROM sage_settings WHERE key = 'embedder'")).rows[0]?.value

    test('saves and recalls by meaning, with the model\'s id recorded on the store and on each vector', async () => {
      await store.reset()
      await rebindEmbedder(store.db, new LexicalEmbedder())
      const app = await buildTestApp(store.db, local)
      try {
        const id = `local:${model.dir}:fp32:mean/${TEST_MODEL_DIMENSION}`
        assert.equal(app.embedder.id, id)
        assert.equal((await save(app, ORIGINAL)).statusCode, 201)
        const batch = await app.inject({ method: 'POST', url: '/v1/memories/batch', payload: { items: OTHERS.map((content) => ({ namespace: 'ops', content })) } })
        assert.equal(batch.statusCode, 201, batch.body)
        assert.deepEqual(await embedders(), [id])
        assert.deepEqual(await binding(), { id, dimension: TEST_MODEL_DIMENSION })
        assert.deepEqual(await recall(app, PARAPHRASE, 'vector'), [ORIGINAL])
        assert.deepEqual(await recall(app, PARAPHRASE, 'hybrid'), [ORIGINAL])
      } finally {
        await app.close()
      }
    })

    test('a save waits no longer than EMBEDDING_SAVE_TIMEOUT_MS behind a busy model; the backfill embeds it afterwards', async () => {
      await store.reset()
      const app = await buildTestApp(store.db, { ...local, EMBEDDING_SAVE_TIMEOUT_MS: 50, EMBEDDING_LOCAL_BATCH_SIZE: 1024 })
      try {
        // One long model run holds the worker for hundreds of milliseconds.
        const busy = app.embedder.embed(Array.from({ length: 1024 }, (_, i) => `${OTHERS[i % OTHERS.length]} ${i} `.repeat(40)))
        const saved = await save(app, ORIGINAL)
        assert.equal(saved.statusCode, 201, saved.body)
        assert.deepEqual(await embedders(), [null], 'saved with its text alone, to be embedded later')
        await busy
        assert.equal(await app.backfill.runOnce(), 1)
        assert.deepEqual(await embedders(), [app.embedder.id])
      } finally {
        await app.close()
      }
      // The query's embedding has the same 50 ms budget, which a loaded machine can miss: recall with the default.
      const reader = await buildTestApp(store.db, local)
      try {
        assert.deepEqual(await recall(reader, PARAPHRASE, 'vector'), [ORIGINAL])
      } finally {
        await reader.close()
      }
    })

    test('switching lexical → local → remote → lexical goes through re-embedding, never a mix', async () => {
      await store.reset()
      const lexical = new LexicalEmbedder()
      await rebindEmbedder(store.db, lexical)
      const lexicalApp = await buildTestApp(store.db)
      try {
        for (const content of [ORIGINAL, ...OTHERS]) assert.equal((await save(lexicalApp, content)).statusCode, 201)
        assert.notDeepEqual(await recall(lexicalApp, PARAPHRASE, 'vector'), [ORIGINAL], 'the lexical embedder matches words, not meaning')
      } finally {
        await lexicalApp.close()
      }

      const switchTo = async (embedder: Embedder, config: Partial<Config>, from: string) => {
        await assert.rejects(buildTestApp(store.db, config), (error: Error) => {
          assert.ok(error instanceof EmbedderMismatchError, String(error))
          assert.match(error.message, new RegExp(`embedded by "${from.replace(/[/.]/g, '\\$&')}"`))
          assert.match(error.message, /sage-memory reembed/)
          return true
        })
        assert.equal(await rebindEmbedder(store.db, embedder), 1 + OTHERS.length)
        await embedder.close?.()
        const app = await buildTestApp(store.db, config)
        assert.equal(await app.backfill.runOnce(), 1 + OTHERS.length)
        assert.deepEqual(await embedders(), [app.embedder.id])
        assert.deepEqual(await binding(), { id: app.embedder.id, dimension: app.embedder.dimension })
        return app
      }

      const localApp = await switchTo(await createEmbedder(testConfig(local)), local, lexical.id)
      const localId = localApp.embedder.id
      try {
        assert.deepEqual(await recall(localApp, PARAPHRASE, 'vector'), [ORIGINAL])
      } finally {
        await localApp.close()
      }

      const remoteConfig: Partial<Config> = { EMBEDDING_URL: remote.url, EMBEDDING_MODEL: 'test-model', EMBEDDING_DIMENSIONS: 64 }
      const remoteEmbedder = new OpenAIEmbedder({ url: remote.url, model: 'test-model', dimension: 64 })
      const remoteApp = await switchTo(remoteEmbedder, remoteConfig, localId)
      await remoteApp.close()

      await assert.rejects(bindEmbedder(store.db, lexical), EmbedderMismatchError)
      const back = await switchTo(lexical, {}, remoteEmbedder.id)
      await back.close()
    })
  })
}
