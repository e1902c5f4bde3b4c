import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import type { FastifyInstance } from 'fastify'
import { SELECTIVE_TERM_ROWS } from '../../src/memory/recall-query.js'
import { searchTerms } from '../../src/memory/memory-service.js'
import { backends, buildTestApp, type TestStore } from '../helper.js'

// Text candidates follow Postgres's term statistics (pg_stats.most_common_elems of memories.search_terms): a term
// in more than SELECTIVE_TERM_ROWS memories brings no candidates on its own; when every query term is that common,
// the candidates are the newest memories holding all of them, then any. Postgres only: PGlite has no autovacuum,
// and the suite's point is the planner's statistics of a real server.

interface Hit {
  id: string
  content: string
  score: number
  scores: { vector: number | null; text: number | null }
}

const FILL = 3_000
const SERVICES = ['billing', 'ledger', 'search', 'auth', 'gateway', 'mailer', 'reports', 'exports', 'cache', 'queue']
const COMMON_QUERY = 'routine deployment report'
const RARE_QUERY = 'deployment quuxFrobnicator'

const postgres = backends().find((b) => b.name === 'postgres')

describe('text candidates by term statistics, on postgres', { skip: postgres ? false : 'TEST_DATABASE_URL is not set' }, () => {
  let store: TestStore
  let app: FastifyInstance
  let rareId: string
  const ns = 'term-stats'

  before(async () => {
    store = await postgres!.create()
    const loader = await buildTestApp(store.db, {}, { vectorIndexer: false })
    try {
      // The rare memory is a day older than the rest: it is never among the newest memories holding a common word.
      const dayAgo = new Date(Date.now() - 86_400_000).toISOString()
      const rare = await loader.inject({
        method: 'POST', url: '/v1/memories',
        payload: { namespace: ns, content: 'Routine deployment report: the quuxFrobnicator flag broke the canary.', created_at: dayAgo }
      })
      assert.equal(rare.statusCode, 201, rare.body)
      rareId = rare.json().id
      for (let start = 0; start < FILL; start += 1000) {
        const items = Array.from({ length: 1000 }, (_, j) => {
          const i = start + j
          return { namespace: ns, content: `Routine deployment report ${i}: service ${SERVICES[i % SERVICES.length]} shipped build b${i} on node n${i % 97}.` }
        })
        const res = await loader.inject({ method: 'POST', url: '/v1/memories/batch', payload: { items } })
        assert.equal(res.statusCode, 201, res.body)
      }
      // A small namespace where the common word is not common at all.
      const small = await loader.inject({
        method: 'POST', url: '/v1/memories/batch',
        payload: { items: [{ namespace: 'small', content: 'The deployment of the billing service waits for approval.' }, { namespace: 'small', content: 'Lunch is at noon.' }] }
      })
      assert.equal(small.statusCode, 201, small.body)
      // Most vectors in the graph, as on a running service.
      assert.equal(await loader.vectorIndexer.drainOnce(), FILL + 3)
    } finally {
      await loader.close()
    }
    await store.db.query('ANALYZE memories')
    // A fresh app: its term statistics (cached 60 s per repository) are read after the ANALYZE.
    app = await buildTestApp(store.db, {}, { vectorIndexer: false })
  })
  after(async () => {
    await app?.close()
    await store?.drop()
  })

  const recall = async (body: Record<string, unknown>): Promise<Hit[]> => {
    const res = await app.inject({ method: 'POST', url: '/v1/recall', payload: { namespace: ns, ...body } })
    assert.equal(res.statusCode, 200, `${JSON.stringify(body)}: ${res.body}`)
    return res.json().results
  }

  /** The rows Postgres estimates hold `term`, from the same statistics recall reads. */
  const estimatedRows = async (term: string): Promise<number> => {
    const { rows } = await store.db.query<{ n: number | null }>(
      `SELECT (SELECT f FROM unnest(s.most_common_elems::text::text[], s.most_common_elem_freqs::float8[]) AS e(t, f) WHERE t = $1)
              * greatest(c.reltuples, 0) AS n
       FROM pg_class c JOIN pg_stats s ON s.schemaname = current_schema() AND s.tablename = c.relname
       WHERE c.oid = 'memories'::regclass AND s.attname = 'search_terms'`,
      [term]
    )
    return Number(rows[0]?.n ?? 0)
  }

  test('the statistics call the filler words common and the identifier rare (the premise of the tests below)', async () => {
    for (const term of searchTerms(COMMON_QUERY)) {
      assert.ok((await estimatedRows(term)) > SELECTIVE_TERM_ROWS, `"${term}" should be common: ${await estimatedRows(term)} rows`)
    }
    for (const term of searchTerms('quuxFrobnicator')) {
      assert.ok((await estimatedRows(term)) <= SELECTIVE_TERM_ROWS, `"${term}" should be selective`)
    }
  })

  for (const mode of ['text', 'hybrid', 'vector'] as const) {
    test(`${mode}: a common word plus a rare identifier finds the rare memory first`, async () => {
      const hits = await recall({ query: RARE_QUERY, mode, k: 5 })
      assert.equal(hits[0]?.id, rareId, JSON.stringify(hits.map((h) => h.content)))
      assert.equal(hits[0]!.scores.text, mode === 'vector' ? null : 1)
    })

    test(`${mode}: only common words still return k results, best first`, async () => {
      const hits = await recall({ query: COMMON_QUERY, mode, k: 10 })
      assert.equal(hits.length, 10)
      if (mode !== 'vector') assert.ok(hits.every((h) => h.scores.text === 1), 'every hit holds all the words')
      for (let i = 1; i < hits.length; i++) assert.ok(hits[i - 1]!.score >= hits[i]!.score)
    })

    test(`${mode}: one common word alone still returns k results`, async () => {
      const hits = await recall({ query: 'deployment', mode, k: 8 })
      assert.equal(hits.length, 8)
    })
  }

  test('a common word plus a selective word of another memory still ranks that memory first', async () => {
    // "canary" is only in the rare memory; the others hold one word of two.
    const hits = await recall({ query: 'deployment canary', mode: 'text', k: 5 })
    assert.equal(hits[0]?.id, rareId)
  })

  test('a common word plus a selective word fills k with the memories holding both', async () => {
    // "billing" is in 300 memories, "deployment" in all of them.
    const hits = await recall({ query: 'billing deployment', mode: 'text', k: 10 })
    assert.equal(hits.length, 10)
    assert.ok(hits.every((h) => /billing/.test(h.content)))
  })

  // Two gaps of the selective-term rule, each a failing test: a query's rarest term decides alone which memories
  // are candidates, so memories holding only its common words are never candidates, even where nothing else is.
  test('a common word plus a word no memory holds (a typo) still finds the memories holding the common word', async () => {
    const hits = await recall({ query: 'deployment xyzzyq', mode: 'text', k: 5 })
    assert.equal(hits.length, 5, JSON.stringify(hits))
  })

  test('in a small namespace, a word common only in another namespace still brings its memories', async () => {
    // The statistics are the whole table's: "deployment" is common because of the other namespace.
    const res = await app.inject({ method: 'POST', url: '/v1/recall', payload: { namespace: 'small', query: 'deployment canary', mode: 'text', k: 5 } })
    assert.equal(res.statusCode, 200)
    assert.match(res.json().results[0]?.content ?? '', /deployment of the billing/, res.body)
  })
})
