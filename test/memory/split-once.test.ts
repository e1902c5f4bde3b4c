import assert from 'node:assert/strict'
import { after, before, test } from 'node:test'
import type { FastifyInstance } from 'fastify'
import type { Embedder } from '../../src/embedder/embedder.js'
import { LexicalEmbedder } from '../../src/embedder/lexical-embedder.js'
import { tokenize } from '../../src/text/tokenize.js'
import { backends, buildTestApp, type TestStore } from '../helper.js'

/** The lexical embedder, recording whether each text came with its terms or had to be split again. */
function recordingEmbedder(): Embedder & { split: Array<{ text: string; terms: readonly string[] | undefined }>; plain: string[] } {
  const inner = new LexicalEmbedder()
  const split: Array<{ text: string; terms: readonly string[] | undefined }> = []
  const plain: string[] = []
  return {
    id: inner.id,
    kind: inner.kind,
    dimension: inner.dimension,
    local: true,
    split,
    plain,
    embed: (texts, signal) => (plain.push(...texts), inner.embed(texts, signal)),
    embedTokenized: (texts, terms) => (texts.forEach((text, i) => split.push({ text, terms: terms[i] })), inner.embedTokenized(texts, terms))
  }
}

let store: TestStore
let app: FastifyInstance
let embedder: ReturnType<typeof recordingEmbedder>
before(async () => {
  store = await backends()[0]!.create()
  embedder = recordingEmbedder()
  app = await buildTestApp(store.db, {}, { embedder })
})
after(async () => {
  await app?.close()
  await store?.drop()
})

test('a save splits its text once: the embedder gets the terms full-text search stored', async () => {
  const content = 'Switch ledgerExport to cursor pagination; 分页查询 too'
  const single = await app.inject({ method: 'POST', url: '/v1/memories', payload: { content, namespace: 'split' } })
  assert.equal(single.statusCode, 201, single.body)
  const batch = await app.inject({
    method: 'POST',
    url: '/v1/memories/batch',
    payload: { items: [{ content: 'first ERR_CONN_RESET item', namespace: 'split' }, { content: 'second src/export/ledger.ts item', namespace: 'split' }] }
  })
  assert.equal(batch.statusCode, 201, batch.body)

  assert.deepEqual(embedder.plain, [])
  assert.deepEqual(embedder.split.map((call) => call.text), [content, 'first ERR_CONN_RESET item', 'second src/export/ledger.ts item'])
  for (const call of embedder.split) assert.deepEqual(call.terms, tokenize(call.text))
  const { rows } = await store.db.query<{ terms: string }>(
    "SELECT array_to_string(tsvector_to_array(search_terms), ' ') AS terms FROM memories WHERE content = $1",
    [content]
  )
  assert.deepEqual(rows[0]!.terms.split(' ').sort(), [...new Set(tokenize(content))].sort())
})

test('a recall splits its query once too', async () => {
  embedder.split.length = 0
  const response = await app.inject({ method: 'POST', url: '/v1/recall', payload: { query: 'ledgerExport pagination', namespace: 'split' } })
  assert.equal(response.statusCode, 200, response.body)
  assert.deepEqual(embedder.plain, [])
  assert.deepEqual(embedder.split, [{ text: 'ledgerExport pagination', terms: tokenize('ledgerExport pagination') }])
})
