import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import { OpenAIEmbedder } from '../../src/embedder/openai-embedder.js'
import { LexicalEmbedder } from '../../src/embedder/lexical-embedder.js'
import { bindEmbedder, EmbedderMismatchError, rebindEmbedder } from '../../src/db/embedder-binding.js'
import { backends, buildTestApp, type TestStore } from '../helper.js'
import { startEmbeddingServer, type EmbeddingServer } from '../support/embedding-server.js'

for (const backend of backends()) {
  describe(`a semantic embedder over HTTP, on ${backend.name}`, () => {
    let store: TestStore
    let server: EmbeddingServer
    before(async () => {
      store = await backend.create()
      server = await startEmbeddingServer({ dimension: 64 })
    })
    after(async () => {
      await server?.close()
      await store?.drop()
    })

    const embedderFor = (timeoutMs = 5000) =>
      new OpenAIEmbedder({ url: server.url, model: 'test-model', dimension: 64, timeoutMs, maxRetries: 0, retryBaseDelayMs: 1 })

    test('a save while the embedder is down is stored, found by text, and embedded later by the backfill', async () => {
      await store.reset()
      const app = await buildTestApp(store.db, { EMBEDDING_SAVE_TIMEOUT_MS: 500 }, { embedder: embedderFor(300) })
      try {
        server.setBehaviour({ down: true })
        const saved = await app.inject({ method: 'POST', url: '/v1/memories', payload: { content: 'the ledger export uses keyset pagination' } })
        assert.equal(saved.statusCode, 201, saved.body)
        const pending = await store.db.query<{ n: number }>('SELECT count(*)::int AS n FROM memories WHERE embedding IS NULL')
        assert.equal(pending.rows[0]!.n, 1)

        const byText = await app.inject({ method: 'POST', url: '/v1/recall', payload: { query: 'ledger pagination' } })
        assert.equal(byText.statusCode, 200)
        const hit = byText.json().results[0]
        assert.equal(hit.id, saved.json().id)
        assert.equal(hit.scores.vector, null)

        server.setBehaviour({ down: false })
        assert.equal(await app.backfill.runOnce(), 1)
        const row = await store.db.query<{ embedder: string }>('SELECT embedder FROM memories WHERE id = $1 AND embedding IS NOT NULL', [saved.json().id])
        assert.equal(row.rows[0]?.embedder, 'openai:test-model/64')

        const byVector = await app.inject({ method: 'POST', url: '/v1/recall', payload: { query: 'ledger pagination', mode: 'vector' } })
        assert.equal(byVector.json().results[0].id, saved.json().id)
        assert.ok(byVector.json().results[0].scores.vector > 0)
      } finally {
        server.setBehaviour({ down: false })
        await app.close()
      }
    })

    test('starting against vectors of another embedder stops with a message naming the way out', async () => {
      await store.reset()
      const app = await buildTestApp(store.db, {}, { embedder: embedderFor() })
      await app.inject({ method: 'POST', url: '/v1/memories', payload: { content: 'embedded by the http model' } })
      await app.close()
      const embedded = await store.db.query<{ n: number }>('SELECT count(*)::int AS n FROM memories WHERE embedding IS NOT NULL')
      assert.equal(embedded.rows[0]!.n, 1)

      const lexical = new LexicalEmbedder({ dimension: 384 })
      await assert.rejects(bindEmbedder(store.db, lexical), (error: Error) => {
        assert.ok(error instanceof EmbedderMismatchError)
        assert.match(error.message, /openai:test-model\/64/)
        assert.match(error.message, /lexical-v1\/384/)
        assert.match(error.message, /sage-memory reembed/)
        return true
      })

      // The way out: rebind, and the backfill re-embeds with the new embedder.
      assert.equal(await rebindEmbedder(store.db, lexical), 1)
      const switched = await buildTestApp(store.db)
      try {
        assert.equal(await switched.backfill.runOnce(), 1)
        const res = await switched.inject({ method: 'POST', url: '/v1/recall', payload: { query: 'http model', mode: 'vector' } })
        assert.equal(res.json().results.length, 1)
      } finally {
        await switched.close()
      }
    })
  })
}
