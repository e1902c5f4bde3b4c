import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import Fastify, { type FastifyInstance } from 'fastify'
import pg from 'pg'
import type { Database } from '../../src/db/database.js'
import { vectorParam } from '../../src/db/vector-param.js'
import { LexicalEmbedder } from '../../src/embedder/lexical-embedder.js'
import { OpenAIEmbedder } from '../../src/embedder/openai-embedder.js'
import { rebindEmbedder } from '../../src/db/embedder-binding.js'
import { createVectorBacklog } from '../../src/memory/vector-backlog.js'
import { createVectorIndexer } from '../../src/memory/vector-indexer.js'
import { createSageMetrics } from '../../src/metrics/sage-metrics.js'
import { backends, buildTestApp, useTestApp, type TestStore } from '../helper.js'
import { startEmbeddingServer, type EmbeddingServer } from '../support/embedding-server.js'
import { waitFor } from '../support/wait-for.js'

// The vector index (migrations/003): a save lists its memory in vector_backlog, recall searches the backlog
// exactly, and the vector indexer moves backlog entries into memory_vectors (the HNSW graph) in batches.

interface Hit {
  id: string
  content: string
  score: number
  scores: { vector: number | null; text: number | null }
}

/** The indexer's batch on both stores (PGlite caps it at 16). */
const BATCH = 16

/** Where the vectors of `ids` are: listed in the backlog, in the graph's table, or neither. */
async function placesOf(db: Database, ids: readonly string[]): Promise<{ backlog: string[]; graph: string[] }> {
  const read = async (table: string) =>
    (await db.query<{ id: string }>(`SELECT id::text AS id FROM ${table} WHERE id = ANY($1::uuid[]) ORDER BY id`, [ids])).rows.map((r) => r.id)
  return { backlog: await read('vector_backlog'), graph: await read('memory_vectors') }
}

const sorted = (ids: readonly string[]) => [...ids].sort()

async function memoryCountOf(db: Database, id: string): Promise<number> {
  return (await db.query<{ n: number }>('SELECT count(*)::int AS n FROM memories WHERE id = $1', [id])).rows[0]!.n
}

/** Whether a statement like `pattern` waits for a lock on the database `client` is connected to. */
async function waitingOn(client: pg.Client, pattern: string): Promise<boolean> {
  // Inside a transaction, pg_stat_activity answers from a snapshot taken at its first read: take a fresh one.
  await client.query('SELECT pg_stat_clear_snapshot()')
  const { rows } = await client.query(
    `SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE $1`,
    [pattern]
  )
  return rows.length > 0
}

async function tableCount(db: Database, table: 'vector_backlog' | 'memory_vectors'): Promise<number> {
  return (await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${table}`)).rows[0]!.n
}

async function metric(app: FastifyInstance, name: string): Promise<number> {
  const body = (await app.inject({ method: 'GET', url: '/metrics' })).body
  const match = new RegExp(`^${name} (\\S+)$`, 'm').exec(body)
  assert.ok(match, `${name} is not exposed`)
  return Number(match[1])
}

for (const backend of backends()) {
  describe(`vector indexer on ${backend.name}`, () => {
    const suite = useTestApp(backend, { VECTOR_INDEX_BATCH_SIZE: BATCH }, { vectorIndexer: false })
    let n = 0
    const namespace = () => `vi-${backend.name}-${++n}`

    const save = async (ns: string, content: string, extra: object = {}): Promise<string> => {
      const res = await suite.app.inject({ method: 'POST', url: '/v1/memories', payload: { namespace: ns, content, ...extra } })
      assert.equal(res.statusCode, 201, res.body)
      return res.json().id
    }
    const saveBatch = async (ns: string, items: object[]): Promise<string[]> => {
      const res = await suite.app.inject({ method: 'POST', url: '/v1/memories/batch', payload: { items: items.map((item) => ({ namespace: ns, ...item })) } })
      assert.equal(res.statusCode, 201, res.body)
      return res.json().items.map((item: { id: string }) => item.id)
    }
    const recall = async (body: Record<string, unknown>, app = suite.app): Promise<Hit[]> => {
      const res = await app.inject({ method: 'POST', url: '/v1/recall', payload: body })
      assert.equal(res.statusCode, 200, `${JSON.stringify(body)}: ${res.body}`)
      return res.json().results
    }
    /** Empties the backlog other tests left, so counts below are this test's own. */
    const drainLeftovers = async () => {
      await suite.app.vectorIndexer.drainOnce()
      assert.equal(await tableCount(suite.store.db, 'vector_backlog'), 0)
    }

    const DISTRACTORS = [
      { content: 'The deploy pipeline fails on the docker build step since Tuesday.' },
      { content: 'Our team lunch is on Fridays at the noodle place.' },
      { content: 'ERR_CONN_RESET from the payments gateway when the keep-alive timeout is short.' }
    ]
    const TARGET = 'Switched the ledger export to keyset pagination with pages of 5,000 rows.'
    // Shares no term with TARGET (so no text candidate): only the vector side, by 3-grams, can find it.
    const TYPO_QUERY = 'ledgr exprt paginaton'

    test('a saved memory waits in the backlog, is recalled first before indexing, and after it from the graph', async () => {
      const ns = namespace()
      await saveBatch(ns, DISTRACTORS)
      const id = await save(ns, TARGET)
      assert.deepEqual(await placesOf(suite.store.db, [id]), { backlog: [id], graph: [] })

      const before: Record<string, Hit[]> = {}
      for (const mode of ['vector', 'hybrid'] as const) {
        for (const query of ['keyset pagination of the ledger export', TYPO_QUERY]) {
          const hits = await recall({ namespace: ns, query, mode })
          assert.equal(hits[0]?.id, id, `${mode} "${query}" before indexing: ${JSON.stringify(hits.map((h) => h.content))}`)
          assert.ok(hits[0]!.scores.vector! > 0)
          before[`${mode}:${query}`] = hits
        }
      }
      // The typo query reaches the memory by its vector alone.
      assert.equal(before[`hybrid:${TYPO_QUERY}`]![0]!.scores.text, 0)

      assert.ok((await suite.app.vectorIndexer.drainOnce()) >= 4)
      assert.deepEqual(await placesOf(suite.store.db, [id]), { backlog: [], graph: [id] })
      assert.equal(await tableCount(suite.store.db, 'vector_backlog'), 0)
      const stored = await suite.store.db.query<{ same: boolean }>(
        'SELECT mv.embedding = m.embedding AS same FROM memory_vectors mv JOIN memories m ON m.id = mv.id WHERE mv.id = $1', [id]
      )
      assert.equal(stored.rows[0]?.same, true, 'the graph holds the memory\'s own vector')

      for (const mode of ['vector', 'hybrid'] as const) {
        for (const query of ['keyset pagination of the ledger export', TYPO_QUERY]) {
          // Another k than before: never the recall cache's answer from before indexing.
          const hits = await recall({ namespace: ns, query, mode, k: 7 })
          assert.equal(hits[0]?.id, id, `${mode} "${query}" after indexing: ${JSON.stringify(hits.map((h) => h.content))}`)
          assert.equal(hits[0]!.scores.vector, before[`${mode}:${query}`]![0]!.scores.vector, 'the same exact score from the graph as from the backlog')
        }
      }
    })

    test('deletes remove the vectors of memories in the backlog and in the graph: by id, by session, by namespace', async () => {
      const db = suite.store.db
      const ns = namespace()
      const other = namespace()

      // By id: one indexed, one still listed.
      const indexed = await save(ns, 'the indexed memory about rotating api keys')
      await suite.app.vectorIndexer.drainOnce()
      const listed = await save(ns, 'the listed memory about rotating api keys')
      assert.deepEqual(await placesOf(db, [indexed, listed]), { backlog: [listed], graph: [indexed] })
      for (const id of [listed, indexed]) {
        const res = await suite.app.inject({ method: 'DELETE', url: `/v1/memories/${id}` })
        assert.equal(res.statusCode, 204, res.body)
      }
      assert.deepEqual(await placesOf(db, [indexed, listed]), { backlog: [], graph: [] })

      // By session: two indexed and two listed in the session; the namespace's other session keeps its vectors.
      const sessionOld = await saveBatch(ns, [{ content: 'session one, first answer', session_id: 's1' }, { content: 'session one, second answer', session_id: 's1' }])
      const keptIndexed = await save(ns, 'session two keeps its indexed vector', { session_id: 's2' })
      await suite.app.vectorIndexer.drainOnce()
      const sessionNew = await saveBatch(ns, [{ content: 'session one, third answer', session_id: 's1' }, { content: 'session one, fourth answer', session_id: 's1' }])
      const keptListed = await save(ns, 'session two keeps its listed vector', { session_id: 's2' })
      const session = [...sessionOld, ...sessionNew]
      assert.deepEqual(await placesOf(db, session), { backlog: sorted(sessionNew), graph: sorted(sessionOld) })
      const forgotSession = await suite.app.inject({ method: 'DELETE', url: `/v1/memories?namespace=${ns}&session_id=s1` })
      assert.equal(forgotSession.statusCode, 200, forgotSession.body)
      assert.equal(forgotSession.json().deleted, 4)
      assert.deepEqual(await placesOf(db, session), { backlog: [], graph: [] })
      assert.deepEqual(await placesOf(db, [keptIndexed, keptListed]), { backlog: [keptListed], graph: [keptIndexed] })

      // A whole namespace; another namespace keeps its vectors.
      const elsewhere = [await save(other, 'another namespace, indexed')]
      await suite.app.vectorIndexer.drainOnce()
      elsewhere.push(await save(other, 'another namespace, listed'))
      const lastListed = await save(ns, 'a last memory of the namespace, listed')
      const whole = [keptIndexed, keptListed, lastListed]
      const forgotNamespace = await suite.app.inject({ method: 'DELETE', url: `/v1/memories?namespace=${ns}` })
      assert.equal(forgotNamespace.statusCode, 200, forgotNamespace.body)
      assert.equal(forgotNamespace.json().deleted, 3)
      assert.deepEqual(await placesOf(db, whole), { backlog: [], graph: [] })
      assert.deepEqual(await placesOf(db, elsewhere), { backlog: [elsewhere[1]!], graph: [elsewhere[0]!] })

      // Nothing comes back: not from a later drain, not in a recall.
      await suite.app.vectorIndexer.drainOnce()
      assert.deepEqual(await placesOf(db, [indexed, listed, ...session, ...whole]), { backlog: [], graph: [] })
      assert.deepEqual(await recall({ namespace: ns, query: 'rotating api keys session answer', mode: 'hybrid' }), [])
    })

    for (const count of [3 * BATCH + 5, 2 * BATCH]) {
      test(`a batch of ${count} saved memories is listed whole, and one drain moves all of it in batches of ${BATCH}`, async () => {
        await drainLeftovers()
        const indexedBefore = await metric(suite.app, 'sage_vectors_indexed_total')
        const ns = namespace()
        const ids = await saveBatch(ns, Array.from({ length: count }, (_, i) => ({ content: `batch memory ${i} about shard ${i % 7} of the catalog` })))
        assert.equal(await tableCount(suite.store.db, 'vector_backlog'), count)
        assert.deepEqual(await placesOf(suite.store.db, ids), { backlog: sorted(ids), graph: [] })

        assert.equal(await suite.app.vectorIndexer.drainOnce(), count)
        assert.deepEqual(await placesOf(suite.store.db, ids), { backlog: [], graph: sorted(ids) })
        assert.equal(await tableCount(suite.store.db, 'vector_backlog'), 0)
        assert.equal(await metric(suite.app, 'sage_vectors_indexed_total'), indexedBefore + count)
        assert.equal(await metric(suite.app, 'sage_vector_backlog'), 0)
        assert.equal(await suite.app.vectorIndexer.drainOnce(), 0, 'nothing left to move')
      })
    }

    test('after indexing a thousand vectors, the drain that empties the backlog tidies the store (vacuum, GIN pending lists)', async () => {
      await drainLeftovers()
      const ns = namespace()
      const ids: string[] = []
      for (let start = 0; start < 1_010; start += 505) {
        ids.push(...await saveBatch(ns, Array.from({ length: 505 }, (_, i) => ({ content: `tidy round memory ${start + i} about ledger export ${i % 7}` }))))
      }
      const tidied: string[] = []
      const backlog = createVectorBacklog(suite.store.db)
      const indexer = createVectorIndexer({
        backlog: { ...backlog, tidy: async () => { tidied.push('tidy'); await backlog.tidy() } },
        metrics: createSageMetrics(),
        log: suite.app.log,
        batchSize: 200,
        intervalMs: 60_000
      })
      assert.equal(await indexer.drainOnce(), 1_010)
      assert.deepEqual(tidied, ['tidy'])
      assert.equal((await placesOf(suite.store.db, ids)).graph.length, 1_010)
      // Tidying did not lose anything a recall needs.
      const hits = await recall({ namespace: ns, query: 'tidy round memory 1009 ledger export', k: 3 })
      assert.equal(hits[0]?.id, ids[1_009])
      // Fewer than a thousand since: the next emptied backlog is not tidied again.
      await save(ns, 'one more after the tidy')
      assert.equal(await indexer.drainOnce(), 1)
      assert.deepEqual(tidied, ['tidy'])
    })

    test('a turn lists both of its memories', async () => {
      const res = await suite.app.inject({
        method: 'POST', url: '/v1/turns',
        payload: { namespace: namespace(), session_id: 't', user_input: 'how do we rotate the api keys?', assistant_response: 'monthly, with the rotate script' }
      })
      assert.equal(res.statusCode, 201, res.body)
      const ids: string[] = res.json().ids
      assert.equal(ids.length, 2)
      assert.deepEqual(await placesOf(suite.store.db, ids), { backlog: sorted(ids), graph: [] })
    })

    test('vector recall ranks candidates from the graph and the backlog together by exact cosine', async () => {
      const ns = namespace()
      const words = ['ledger', 'export', 'pagination', 'keyset', 'rows', 'csv', 'stream', 'cursor', 'billing', 'invoice']
      const content = (i: number) => `note ${i}: ${words.filter((_, w) => (i >> (w % 5)) & 1 || w === i % words.length).join(' ')} and more`
      const first = await saveBatch(ns, Array.from({ length: 15 }, (_, i) => ({ content: content(i) })))
      await suite.app.vectorIndexer.drainOnce()
      const second = await saveBatch(ns, Array.from({ length: 15 }, (_, i) => ({ content: content(i + 15) })))
      assert.deepEqual((await placesOf(suite.store.db, [...first, ...second])).backlog, sorted(second), 'half in the graph, half in the backlog')

      const query = 'ledger export with keyset pagination of csv rows'
      const k = 20
      const hits = await recall({ namespace: ns, query, mode: 'vector', k })
      const scores = hits.map((h) => h.scores.vector!)
      for (let i = 1; i < scores.length; i++) assert.ok(scores[i - 1]! >= scores[i]!, `scores.vector not non-increasing: ${scores.join(', ')}`)
      for (const hit of hits) assert.equal(hit.score, hit.scores.vector, 'vector mode ranks by the vector score alone')
      const places = new Set(hits.map((h) => h.id))
      assert.ok(first.some((id) => places.has(id)) && second.some((id) => places.has(id)), 'hits come from both the graph and the backlog')

      // The exact ranking over every memory of the namespace, as recall returns it (positive scores, 4 decimals).
      const [vector] = await suite.app.embedder.embed([query])
      const exact = await suite.store.db.query<{ score: number }>(
        `SELECT (1 - (embedding::vector(384) <=> $2::vector(384)))::float8 AS score FROM memories WHERE namespace = $1 ORDER BY score DESC`,
        [ns, vectorParam(vector!)]
      )
      const expected = exact.rows.map((r) => Number(r.score)).filter((s) => s > 0).slice(0, k)
      assert.equal(scores.length, expected.length)
      scores.forEach((score, i) => assert.ok(Math.abs(score - expected[i]!) < 1e-4, `rank ${i}: ${score} vs exact ${expected[i]}`))

      // Searched exactly, as a namespace this small is by default (RECALL_EXACT_MAX_MEMORIES): the same ranking.
      const exactApp = await buildTestApp(suite.store.db, { VECTOR_INDEX_BATCH_SIZE: BATCH, RECALL_EXACT_MAX_MEMORIES: 1_000 }, { vectorIndexer: false })
      try {
        const exactScores = (await recall({ namespace: ns, query, mode: 'vector', k }, exactApp)).map((h) => h.scores.vector!)
        assert.equal(exactScores.length, expected.length)
        exactScores.forEach((score, i) => assert.ok(Math.abs(score - expected[i]!) < 1e-4, `exact path, rank ${i}: ${score} vs ${expected[i]}`))
      } finally {
        await exactApp.close()
      }
    })

    test('vector mode drops text candidates without a vector; hybrid keeps them', async () => {
      const ns = namespace()
      const embedded = await save(ns, 'rotate the payments api keys every month')
      // A memory still waiting for the backfill, written as a save with the embedder down writes it.
      const unembedded = '00000000-0000-4000-8000-000000000001'
      await suite.store.db.query(
        `INSERT INTO memories (id, namespace, role, content, search_terms) VALUES ($1, $2, 'note', 'rotate the payments api keys', to_tsvector('simple', 'rotat payment api kei'))`,
        [unembedded, ns]
      )
      const vector = await recall({ namespace: ns, query: 'rotate payments api keys', mode: 'vector' })
      assert.deepEqual(vector.map((h) => h.id), [embedded])
      const hybrid = await recall({ namespace: ns, query: 'rotate payments api keys', mode: 'hybrid' })
      assert.deepEqual(hybrid.map((h) => h.id).sort(), [embedded, unembedded].sort())
      assert.equal(hybrid.find((h) => h.id === unembedded)!.scores.vector, null)
    })

    // Postgres only: PGlite runs one statement at a time, so a delete can never meet an indexing round halfway.
    // The round is held at its insert by another transaction, as a large batch holds it while the graph grows:
    // the delete then waits for the backlog entry the round took, and deletes with a snapshot taken after it.
    for (const by of ['id', 'namespace'] as const) {
      test(`a delete by ${by} that meets an indexing round halfway leaves no vector behind`, { skip: backend.name !== 'postgres' }, async () => {
        const db = suite.store.db
        await drainLeftovers()
        const ns = namespace()
        const id = await save(ns, 'deleted while its vector is on the way into the graph')
        const blocker = new pg.Client({ connectionString: suite.store.url })
        await blocker.connect()
        let draining: Promise<number> | undefined
        let deleting: Promise<{ statusCode: number }> | undefined
        try {
          await blocker.query('BEGIN')
          await blocker.query('INSERT INTO memory_vectors (id, embedding) SELECT id, embedding FROM memories WHERE id = $1', [id])
          draining = suite.app.vectorIndexer.drainOnce()
          await waitFor('the indexing round to wait at its insert', () => waitingOn(blocker, '%INSERT INTO memory_vectors%'), 5_000)
          // (inject starts its request only when awaited: the promise starts it now)
          deleting = Promise.resolve(suite.app.inject({ method: 'DELETE', url: by === 'id' ? `/v1/memories/${id}` : `/v1/memories?namespace=${ns}` }))
          // The delete's first statement locks the backlog entries (memory-store.ts, AWAIT_INDEXING_OF_*).
          const lockingStatement = by === 'id' ? 'SELECT id FROM vector_backlog WHERE id = $1 FOR UPDATE' : '%FOR UPDATE OF b'
          await waitFor('the delete to wait for the backlog entry', () => waitingOn(blocker, lockingStatement), 5_000)
          await blocker.query('ROLLBACK')
          assert.equal(await draining, 1)
          assert.equal((await deleting).statusCode, by === 'id' ? 204 : 200)
        } finally {
          await blocker.query('ROLLBACK').catch(() => undefined)
          await blocker.end()
          await Promise.allSettled([draining, deleting])
        }
        assert.equal(await memoryCountOf(db, id), 0)
        assert.deepEqual(await placesOf(db, [id]), { backlog: [], graph: [] }, 'the deleted memory\'s vector stays in memory_vectors')
      })
    }

    describe('with the indexer running', () => {
      let running: FastifyInstance | undefined
      after(async () => {
        await running?.close()
      })

      test('a saved memory leaves the backlog for the graph within seconds', async () => {
        running = await buildTestApp(suite.store.db, { VECTOR_INDEX_BATCH_SIZE: BATCH })
        const res = await running.inject({ method: 'POST', url: '/v1/memories', payload: { namespace: namespace(), content: 'indexed in the background' } })
        assert.equal(res.statusCode, 201, res.body)
        const id: string = res.json().id
        await waitFor('the vector to enter the graph', async () => {
          const places = await placesOf(suite.store.db, [id])
          return places.backlog.length === 0 && places.graph.length === 1
        }, 5_000)
        await waitFor('the backlog gauge to read 0', async () => (await metric(running!, 'sage_vector_backlog')) === 0, 5_000)
        assert.ok((await metric(running, 'sage_vectors_indexed_total')) >= 1)
        await running.close()
        running = undefined
      })

      test('a save wakes an idle indexer: no need to wait out a long interval', async () => {
        running = await buildTestApp(suite.store.db, { VECTOR_INDEX_BATCH_SIZE: BATCH, VECTOR_INDEX_INTERVAL_MS: 600_000 })
        // Let the first round (at start) finish, so the indexer is asleep when the save arrives.
        await new Promise((resolve) => setTimeout(resolve, 200))
        const res = await running.inject({ method: 'POST', url: '/v1/memories', payload: { namespace: namespace(), content: 'poked into the graph' } })
        assert.equal(res.statusCode, 201, res.body)
        const id: string = res.json().id
        await waitFor('the poked indexer to move the vector', async () => (await placesOf(suite.store.db, [id])).graph.length === 1, 3_000)
        const closing = Date.now()
        await running.close()
        running = undefined
        assert.ok(Date.now() - closing < 3_000, 'closing does not wait out the interval')
      })

      test('VECTOR_INDEXER=false: this replica leaves the backlog alone, and recall still finds the memory', async () => {
        running = await buildTestApp(suite.store.db, { VECTOR_INDEXER: false, VECTOR_INDEX_BATCH_SIZE: BATCH, VECTOR_INDEX_INTERVAL_MS: 50 })
        const ns = namespace()
        const res = await running.inject({ method: 'POST', url: '/v1/memories', payload: { namespace: ns, content: 'served by a replica that does not index' } })
        assert.equal(res.statusCode, 201, res.body)
        const id: string = res.json().id
        // Several intervals and the poke's gathering time: an indexer that ran would have moved it by now.
        await new Promise((resolve) => setTimeout(resolve, 300))
        assert.deepEqual(await placesOf(suite.store.db, [id]), { backlog: [id], graph: [] })
        const recall = await running.inject({ method: 'POST', url: '/v1/recall', payload: { namespace: ns, query: 'replica that does not index', mode: 'vector' } })
        assert.equal(recall.statusCode, 200, recall.body)
        assert.equal(recall.json().results[0]?.id, id)
        await running.close()
        running = undefined
      })

      test('a listening service answers requests while its indexer works through a backlog', async () => {
        await drainLeftovers()
        // Listed by the suite's app, whose indexer is off; on PGlite, 800 vectors are 50 rounds of the indexer.
        await saveBatch(namespace(), Array.from({ length: 800 }, (_, i) => ({ content: `waiting for the graph, memory ${i} of a long import` })))
        running = await buildTestApp(suite.store.db, { VECTOR_INDEX_BATCH_SIZE: BATCH, VECTOR_INDEX_INTERVAL_MS: 600_000 })
        const address = await running.listen({ host: '127.0.0.1', port: 0 })
        await waitFor('the indexer to start on the backlog', async () => (await tableCount(suite.store.db, 'vector_backlog')) < 800, 5_000)
        // Each answer has to come while the backlog is still being worked through, not after.
        for (let i = 0; i < 3; i++) {
          const res = await fetch(`${address}/v1/memories?namespace=${namespace()}`)
          assert.equal(res.status, 200)
          assert.ok(
            (await tableCount(suite.store.db, 'vector_backlog')) > 0,
            `request ${i + 1} was answered only once the indexer had emptied the backlog`
          )
        }
        await waitFor('the backlog to empty', async () => (await tableCount(suite.store.db, 'vector_backlog')) === 0, 60_000)
        await running.close()
        running = undefined
      })

      test('vectors listed by another replica are indexed at the next interval', async () => {
        running = await buildTestApp(suite.store.db, { VECTOR_INDEX_BATCH_SIZE: BATCH, VECTOR_INDEX_INTERVAL_MS: 200 })
        await new Promise((resolve) => setTimeout(resolve, 100))
        // Saved through the suite's app, whose indexer is off: nobody pokes `running`.
        const ids = await saveBatch(namespace(), Array.from({ length: BATCH + 3 }, (_, i) => ({ content: `from another replica ${i}` })))
        await waitFor('the other replica\'s vectors to enter the graph', async () => (await placesOf(suite.store.db, ids)).graph.length === ids.length, 5_000)
        assert.deepEqual((await placesOf(suite.store.db, ids)).backlog, [])
        await running.close()
        running = undefined
      })
    })
  })

  describe(`vector indexer with the backfill and reembed, on ${backend.name}`, () => {
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

    const embedderFor = (timeoutMs: number) =>
      new OpenAIEmbedder({ url: server.url, model: 'test-model', dimension: 64, timeoutMs, maxRetries: 0, retryBaseDelayMs: 1 })

    test('a memory saved with the embedder down is not listed; the backfill lists it, and the indexer moves it', async () => {
      const app = await buildTestApp(store.db, { EMBEDDING_SAVE_TIMEOUT_MS: 500 }, { embedder: embedderFor(300), vectorIndexer: false })
      try {
        server.setBehaviour({ down: true })
        const saved = await app.inject({ method: 'POST', url: '/v1/memories', payload: { content: 'the ledger export uses keyset pagination' } })
        assert.equal(saved.statusCode, 201, saved.body)
        const id: string = saved.json().id
        const unembedded = await store.db.query<{ embedded: boolean }>('SELECT embedding IS NOT NULL AS embedded FROM memories WHERE id = $1', [id])
        assert.equal(unembedded.rows[0]?.embedded, false)
        assert.deepEqual(await placesOf(store.db, [id]), { backlog: [], graph: [] })
        assert.equal(await app.vectorIndexer.drainOnce(), 0)

        server.setBehaviour({ down: false })
        assert.equal(await app.backfill.runOnce(), 1)
        assert.deepEqual(await placesOf(store.db, [id]), { backlog: [id], graph: [] })
        // A second round finds nothing to embed and lists nothing twice.
        assert.equal(await app.backfill.runOnce(), 0)
        assert.equal(await tableCount(store.db, 'vector_backlog'), 1)

        const fromBacklog = await app.inject({ method: 'POST', url: '/v1/recall', payload: { query: 'ledger pagination', mode: 'vector' } })
        assert.equal(fromBacklog.statusCode, 200, fromBacklog.body)
        assert.equal(fromBacklog.json().results[0]?.id, id)

        assert.equal(await app.vectorIndexer.drainOnce(), 1)
        assert.deepEqual(await placesOf(store.db, [id]), { backlog: [], graph: [id] })
        const fromGraph = await app.inject({ method: 'POST', url: '/v1/recall', payload: { query: 'ledger pagination', mode: 'vector', k: 3 } })
        assert.equal(fromGraph.statusCode, 200, fromGraph.body)
        assert.equal(fromGraph.json().results[0]?.id, id)
      } finally {
        server.setBehaviour({ down: false })
        await app.close()
      }
    })

    test('reembed clears the graph and the backlog, rebuilds the index for the new dimension, and the backfill refills them', async () => {
      const app = await buildTestApp(store.db, {}, { embedder: embedderFor(5000), vectorIndexer: false })
      let ids: string[]
      try {
        const res = await app.inject({ method: 'POST', url: '/v1/memories/batch', payload: { items: [{ content: 'rotate the api keys monthly' }, { content: 'the noodle place on fridays' }] } })
        assert.equal(res.statusCode, 201, res.body)
        ids = res.json().items.map((item: { id: string }) => item.id)
        await app.vectorIndexer.drainOnce()
        const res2 = await app.inject({ method: 'POST', url: '/v1/memories', payload: { content: 'still listed when the embedder changes' } })
        ids.push(res2.json().id)
      } finally {
        await app.close()
      }
      assert.ok((await tableCount(store.db, 'memory_vectors')) >= 2)
      assert.ok((await tableCount(store.db, 'vector_backlog')) >= 1)

      const lexical = new LexicalEmbedder({ dimension: 384 })
      assert.ok((await rebindEmbedder(store.db, lexical)) >= 3)
      assert.equal(await tableCount(store.db, 'memory_vectors'), 0)
      assert.equal(await tableCount(store.db, 'vector_backlog'), 0)
      const indexes = await store.db.query<{ indexname: string }>("SELECT indexname FROM pg_indexes WHERE tablename = 'memory_vectors' AND indexname LIKE '%hnsw%'")
      assert.deepEqual(indexes.rows.map((r) => r.indexname), ['memory_vectors_hnsw_384'])

      const switched = await buildTestApp(store.db, {}, { vectorIndexer: false })
      try {
        const embedded = await switched.backfill.runOnce()
        assert.ok(embedded >= 3)
        assert.deepEqual((await placesOf(store.db, ids)).backlog, sorted(ids))
        assert.equal(await switched.vectorIndexer.drainOnce(), embedded)
        assert.deepEqual(await placesOf(store.db, ids), { backlog: [], graph: sorted(ids) })
        const res = await switched.inject({ method: 'POST', url: '/v1/recall', payload: { query: 'rotate api keys', mode: 'vector' } })
        assert.equal(res.statusCode, 200, res.body)
        assert.equal(res.json().results[0]?.id, ids[0])
      } finally {
        await switched.close()
      }
    })
  })
}

describe('vector indexer yielding to saves', () => {
  /** A backlog in memory: the indexer's timing is under test, not the SQL. Each round takes `roundMs`. */
  function fakeStore(roundMs = 0) {
    let backlog = 0
    const rounds: number[] = []
    return {
      rounds,
      list(n: number) {
        backlog += n
      },
      backlog: () => backlog,
      vectorBacklog: {
        async indexBacklog(limit: number) {
          rounds.push(performance.now())
          if (roundMs > 0) await new Promise((resolve) => setTimeout(resolve, roundMs))
          const taken = Math.min(limit, backlog)
          backlog -= taken
          return { taken, indexed: taken }
        },
        countVectorBacklog: async () => backlog,
        analyze: async () => 0,
        sweepOrphanVectors: async () => 0,
        tidy: async () => undefined
      }
    }
  }

  /** Saves `count` vectors every 10 ms for `ms`, poking as the service does; answers when the burst ended. */
  async function burst(store: ReturnType<typeof fakeStore>, indexer: ReturnType<typeof createVectorIndexer>, ms: number, count: number): Promise<number> {
    const until = performance.now() + ms
    while (performance.now() < until) {
      store.list(count)
      indexer.poke(count)
      await new Promise((resolve) => setTimeout(resolve, 10))
    }
    return performance.now()
  }

  const start = (store: ReturnType<typeof fakeStore>, maxDeferred: number, overloadMaxWaitMs?: number) => {
    const indexer = createVectorIndexer({
      backlog: store.vectorBacklog,
      metrics: createSageMetrics(),
      log: Fastify({ logger: false }).log,
      batchSize: 10,
      intervalMs: 60_000,
      yieldMs: 200,
      maxDeferred,
      overloadMaxWaitMs
    })
    indexer.start()
    return indexer
  }

  test('while saves keep arriving it waits, and indexes them all once they pause', async () => {
    const store = fakeStore()
    const indexer = start(store, 10_000)
    try {
      await new Promise((resolve) => setTimeout(resolve, 50))
      const began = performance.now()
      const ended = await burst(store, indexer, 400, 1)
      // Without yielding, every poke starts a round (about 20 in 400 ms); a stalled timer may let one through.
      assert.ok(store.rounds.filter((t) => t >= began && t < ended).length <= 1, `rounds during the burst: ${store.rounds.length}`)
      await waitFor('the backlog to be indexed after the pause', async () => store.backlog() === 0, 3_000)
    } finally {
      await indexer.stop()
    }
  })

  test('it stops waiting once VECTOR_INDEX_MAX_DEFERRED vectors wait', async () => {
    const store = fakeStore()
    const indexer = start(store, 30)
    try {
      await new Promise((resolve) => setTimeout(resolve, 50))
      const began = performance.now()
      const ended = await burst(store, indexer, 400, 10)
      assert.ok(store.rounds.filter((t) => t >= began && t < ended).length >= 3, `rounds during the burst: ${store.rounds.length}`)
      // It keeps the backlog near the limit rather than letting it grow with the burst (about 400 listed).
      assert.ok(store.backlog() < 200, `backlog at the end of the burst: ${store.backlog()}`)
    } finally {
      await indexer.stop()
    }
  })

  test('a save still being written is no pause: a long batch keeps it waiting until it ends', async () => {
    const store = fakeStore()
    const indexer = start(store, 10_000)
    try {
      await new Promise((resolve) => setTimeout(resolve, 50))
      const began = performance.now()
      const ended = indexer.saveStarted()
      store.list(5)
      indexer.poke(5)
      // Four times the 200 ms pause, with nothing but this one save in flight.
      await new Promise((resolve) => setTimeout(resolve, 800))
      assert.equal(store.rounds.filter((t) => t >= began).length, 0, 'indexed while a save was being written')
      ended()
      await waitFor('the backlog to be indexed once the save ended', async () => store.backlog() === 0, 3_000)
    } finally {
      await indexer.stop()
    }
  })

  // Rounds of 10 vectors taking 25 ms: it indexes at most 400 a second; the bursts below save 1,000 a second.
  test('when saves outpace indexing it keeps waiting past VECTOR_INDEX_MAX_DEFERRED, and indexes once they pause', async () => {
    const store = fakeStore(25)
    const indexer = start(store, 30, 60_000)
    try {
      await new Promise((resolve) => setTimeout(resolve, 50))
      const began = performance.now()
      const ended = await burst(store, indexer, 1_500, 10)
      // The first rounds measure how fast it indexes (and the first window how fast saves arrive); then it waits.
      const late = store.rounds.filter((t) => t >= began + 1_000 && t < ended).length
      assert.ok(late <= 1, `rounds in the last 500 ms of the burst: ${late}`)
      assert.ok(store.backlog() > 500, `backlog at the end of the burst: ${store.backlog()}`)
      await waitFor('the backlog to be indexed after the pause', async () => store.backlog() === 0, 10_000)
    } finally {
      await indexer.stop()
    }
  })

  test('an overload that lasts longer than its wait gets indexing back', async () => {
    const store = fakeStore(25)
    const indexer = start(store, 30, 300)
    try {
      await new Promise((resolve) => setTimeout(resolve, 50))
      const began = performance.now()
      const ended = await burst(store, indexer, 2_000, 10)
      // Waiting ended 300 ms into the overload: from then on it indexes all the time (a round every 25 ms).
      const late = store.rounds.filter((t) => t >= began + 1_500 && t < ended).length
      assert.ok(late >= 5, `rounds in the last 500 ms of the burst: ${late}`)
    } finally {
      await indexer.stop()
    }
  })
})
