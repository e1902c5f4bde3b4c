import assert from 'node:assert/strict'
import { after, before, beforeEach, describe, test } from 'node:test'
import type { FastifyInstance } from 'fastify'
import type { Embedder } from '../../../src/embedder/embedder.js'
import { LexicalEmbedder } from '../../../src/embedder/lexical-embedder.js'
import { LIMITS } from '../../../src/memory/memory-schemas.js'
import { backends, buildTestApp, type TestStore } from '../../helper.js'
import { waitFor } from '../../support/wait-for.js'

// Built at run time so this file holds no credential-shaped literal.
const GITHUB_TOKEN = ['ghp', '_', 'A1b2C3d4'.repeat(4), 'E5f6'].join('')
const PASSWORD = 'hunter2-but-longer'

/** An embedder that remembers every text it was asked to embed. */
function recordingEmbedder(): Embedder & { texts: string[] } {
  const inner = new LexicalEmbedder()
  const texts: string[] = []
  return { id: inner.id, dimension: inner.dimension, kind: inner.kind, texts, embed: (batch, signal) => (texts.push(...batch), inner.embed(batch, signal)) }
}

const redactionCount = async (app: FastifyInstance, kind: string) => {
  const text = (await app.inject({ method: 'GET', url: '/metrics' })).body
  const match = new RegExp(`^sage_redactions_total\\{kind="${kind}"\\} (\\d+)`, 'm').exec(text)
  return Number(match?.[1] ?? 0)
}

/** Secrets are replaced before the text is stored and before it is embedded, on every save route, and counted. */
for (const backend of backends()) {
  describe(`secret redaction on ${backend.name}`, () => {
    let store: TestStore
    let app: FastifyInstance
    let embedder: ReturnType<typeof recordingEmbedder>
    before(async () => {
      store = await backend.create()
      embedder = recordingEmbedder()
      app = await buildTestApp(store.db, {}, { embedder })
    })
    after(async () => {
      await app?.close()
      await store?.drop()
    })
    beforeEach(async () => {
      await store.reset()
      embedder.texts.length = 0
    })

    const leaked = async () => {
      const { rows } = await store.db.query<{ n: number }>(
        `SELECT count(*)::int AS n FROM memories WHERE content LIKE '%' || $1 || '%' OR content LIKE '%' || $2 || '%'
           OR metadata::text LIKE '%' || $1 || '%' OR metadata::text LIKE '%' || $2 || '%' OR content LIKE '%do not keep%'`,
        [GITHUB_TOKEN, PASSWORD]
      )
      return rows[0]!.n
    }

    test('one save: the stored and the embedded text carry markers, <private> spans are gone, /metrics counts them', async () => {
      const githubBefore = await redactionCount(app, 'github-token')
      const privateBefore = await redactionCount(app, 'private')
      const res = await app.inject({
        method: 'POST',
        url: '/v1/memories',
        payload: {
          content: `push with ${GITHUB_TOKEN} to postgres://app:${PASSWORD}@db/x <private>do not keep</private> done`,
          metadata: { command: `git push https://x:${PASSWORD}@github.com/o/r`, nested: [{ env: `GITHUB_TOKEN=${GITHUB_TOKEN}` }], cwd: '/src' }
        }
      })
      assert.equal(res.statusCode, 201, res.body)
      const memory = (await app.inject({ method: 'GET', url: `/v1/memories/${res.json().id}` })).json()
      assert.equal(memory.content, 'push with [REDACTED:github-token] to postgres://app:[REDACTED:url-password]@db/x  done')
      assert.deepEqual(memory.metadata, {
        command: 'git push https://x:[REDACTED:url-password]@github.com/o/r',
        nested: [{ env: 'GITHUB_TOKEN=[REDACTED:github-token]' }],
        cwd: '/src'
      })
      assert.deepEqual(embedder.texts, [memory.content])
      assert.equal(await leaked(), 0)
      assert.equal(await redactionCount(app, 'github-token'), githubBefore + 2)
      assert.equal(await redactionCount(app, 'private'), privateBefore + 1)
    })

    test('batch and turn saves are redacted too', async () => {
      const batch = await app.inject({
        method: 'POST',
        url: '/v1/memories/batch',
        payload: { items: [{ content: `token ${GITHUB_TOKEN}` }, { content: 'plain' }, { content: `<PRIVATE>do not keep</PRIVATE>kept` }] }
      })
      assert.equal(batch.statusCode, 201, batch.body)
      const turn = await app.inject({
        method: 'POST',
        url: '/v1/turns',
        payload: { user_input: `my password="${PASSWORD}"`, assistant_response: `use ${GITHUB_TOKEN}`, metadata: { note: `password: ${PASSWORD}` } }
      })
      assert.equal(turn.statusCode, 201, turn.body)
      assert.equal(await leaked(), 0)
      for (const text of embedder.texts) {
        assert.ok(!text.includes(GITHUB_TOKEN) && !text.includes(PASSWORD) && !text.includes('do not keep'), text)
      }
      const { rows } = await store.db.query<{ content: string }>('SELECT content FROM memories ORDER BY content')
      assert.deepEqual(rows.map((r) => r.content), ['kept', 'my password="[REDACTED:secret-assignment]"', 'plain', 'token [REDACTED:github-token]', 'use [REDACTED:github-token]'])
    })

    test('a metadata value repeated across a batch is redacted in every item and counted each time', async () => {
      const before = await redactionCount(app, 'secret-assignment')
      const env = `PASSWORD=${PASSWORD}`
      const items = Array.from({ length: 5 }, (_, i) => ({ content: `step ${i}`, metadata: { env, cwd: '/src' } }))
      const batch = await app.inject({ method: 'POST', url: '/v1/memories/batch', payload: { items } })
      assert.equal(batch.statusCode, 201, batch.body)
      const again = await app.inject({ method: 'POST', url: '/v1/memories', payload: { content: 'later', metadata: { env } } })
      assert.equal(again.statusCode, 201, again.body)
      const { rows } = await store.db.query<{ env: string }>("SELECT metadata->>'env' AS env FROM memories")
      assert.deepEqual(rows.map((r) => r.env), Array(6).fill('PASSWORD=[REDACTED:secret-assignment]'))
      assert.equal(await leaked(), 0)
      assert.equal(await redactionCount(app, 'secret-assignment'), before + 6)
    })

    test('content within the limit whose markers outgrow its secrets is saved, by a save and by a hook\'s Stop', async () => {
      // Each marker is longer than the password it replaces: redacted, the text is about 136,000 characters.
      const line = `PASSWORD=${PASSWORD}\n`
      const lines = Math.floor(LIMITS.contentChars / line.length)
      const content = line.repeat(lines) + 'x'.repeat(LIMITS.contentChars - lines * line.length)
      assert.equal(content.length, LIMITS.contentChars)
      const saved = await app.inject({ method: 'POST', url: '/v1/memories', payload: { content, namespace: 'at-limit' } })
      assert.equal(saved.statusCode, 201, saved.body)
      const stop = await app.inject({
        method: 'POST', url: '/hooks/claude-code?namespace=at-limit',
        payload: { hook_event_name: 'Stop', session_id: 'at-limit', last_assistant_message: content }
      })
      assert.equal(stop.statusCode, 200)
      // The hook may answer before a long text's save lands (its worker thread starts with the first one).
      const rows = await waitFor('both saves', async () => {
        const { rows } = await store.db.query<{ role: string; length: number; content: string }>(
          "SELECT role, length(content) AS length, content FROM memories WHERE namespace = 'at-limit' ORDER BY role"
        )
        return rows.length === 2 ? rows : undefined
      }) as Array<{ role: string; length: number; content: string }>
      assert.deepEqual(rows.map((row) => row.role), ['assistant', 'note'])
      for (const row of rows) {
        assert.ok(row.length > LIMITS.contentChars, `stored ${row.length} characters`)
        assert.ok(!row.content.includes(PASSWORD))
      }
      assert.equal(await leaked(), 0)
    })

    test('content that is nothing but a <private> span is a 400 and writes nothing', async () => {
      const res = await app.inject({ method: 'POST', url: '/v1/memories', payload: { content: '<private>all of it</private>' } })
      assert.equal(res.statusCode, 400)
      assert.match(res.json().message, /content must be a non-empty string/)
      assert.equal((await store.db.query<{ n: number }>('SELECT count(*)::int AS n FROM memories')).rows[0]!.n, 0)
    })
  })
}

describe('SAGE_REDACT_SECRETS=false', () => {
  test('keeps the text as it came', async () => {
    const store = await backends()[0]!.create()
    const app = await buildTestApp(store.db, { SAGE_REDACT_SECRETS: false })
    try {
      const content = `token ${GITHUB_TOKEN} <private>x</private>`
      const res = await app.inject({ method: 'POST', url: '/v1/memories', payload: { content, metadata: { t: GITHUB_TOKEN } } })
      const memory = (await app.inject({ method: 'GET', url: `/v1/memories/${res.json().id}` })).json()
      assert.equal(memory.content, content)
      assert.deepEqual(memory.metadata, { t: GITHUB_TOKEN })
    } finally {
      await app.close()
      await store.drop()
    }
  })
})
