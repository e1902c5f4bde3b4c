import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import type { FastifyInstance } from 'fastify'
import type { Database } from '../../src/db/database.js'
import { SCORED_MEMORIES } from '../../src/memory/recall.js'
import { COMMON_TERM_SCAN } from '../../src/memory/recall-query.js'
import { createTermStatistics } from '../../src/memory/term-statistics.js'
import { backends, buildTestApp, type TestStore } from '../helper.js'

// BM25 reads each namespace's term counters (migrations/005): saves and deletes list their memories, a background
// fold counts them, and a recall adds what still waits. The counters must equal a count of the memories themselves
// whatever ran at the same time.

interface Hit {
  id: string
  content: string
  score: number
  scores: { vector: number | null; text: number | null }
  matched_terms: string[]
}

/** The frequencies and sizes counted from the memories themselves, for every namespace. */
async function recount(db: Database): Promise<{ terms: Map<string, number>; namespaces: Map<string, [number, number]> }> {
  const terms = new Map<string, number>()
  const { rows } = await db.query<{ namespace: string; term: string; n: number }>(
    `SELECT namespace, t.term, count(*)::int AS n FROM memories, unnest(tsvector_to_array(search_terms)) AS t(term) GROUP BY 1, 2`
  )
  for (const row of rows) terms.set(`${row.namespace}/${row.term}`, row.n)
  const namespaces = new Map<string, [number, number]>()
  const sizes = await db.query<{ namespace: string; n: number; terms: number }>('SELECT namespace, count(*)::int AS n, sum(length(search_terms))::int AS terms FROM memories GROUP BY 1')
  for (const row of sizes.rows) namespaces.set(row.namespace, [row.n, row.terms])
  return { terms, namespaces }
}

/** The folded counters alone (what recall reads once nothing waits). */
async function counters(db: Database): Promise<{ terms: Map<string, number>; namespaces: Map<string, [number, number]> }> {
  const terms = new Map<string, number>()
  for (const row of (await db.query<{ namespace: string; term: string; memories: number }>('SELECT namespace, term, memories::int FROM term_frequencies')).rows) {
    terms.set(`${row.namespace}/${row.term}`, row.memories)
  }
  const namespaces = new Map<string, [number, number]>()
  for (const row of (await db.query<{ namespace: string; memories: number; terms: number }>('SELECT namespace, memories::int, terms::int FROM namespace_statistics')).rows) {
    namespaces.set(row.namespace, [row.memories, row.terms])
  }
  return { terms, namespaces }
}

const WORDS = 'ledger export page cursor pool query session token cache queue worker retry schema index vector recall prompt hook batch invoice'.split(' ')
const text = (i: number) => `Note ${i % 7}: ${WORDS[i % WORDS.length]} ${WORDS[(i * 3) % WORDS.length]} and ${WORDS[(i * 7) % WORDS.length]} for team t${i % 5}.`

for (const backend of backends()) {
  describe(`term statistics on ${backend.name}`, () => {
    let store: TestStore
    let app: FastifyInstance

    before(async () => {
      store = await backend.create()
      // The test folds by hand, at the moments it chooses, besides the folds it runs alongside the writes.
      app = await buildTestApp(store.db, {}, { vectorIndexer: false, termStatisticsFolder: false })
    })
    after(async () => {
      await app?.close()
      await store?.drop()
    })

    const save = async (items: object[]) => {
      const res = await app.inject({ method: 'POST', url: '/v1/memories/batch', payload: { items } })
      assert.equal(res.statusCode, 201, res.body)
      return (res.json().items as Array<{ id: string }>).map((item) => item.id)
    }

    test('the counters equal a count of the memories after concurrent saves, deletes and folds', async () => {
      await store.reset()
      const statistics = createTermStatistics(store.db)
      const ids = await save(Array.from({ length: 60 }, (_, i) => ({ namespace: `n${i % 3}`, session_id: `s${i % 4}`, content: text(i) })))
      const writes: Array<Promise<unknown>> = []
      let folding = true
      const folds = (async () => {
        let moved = 0
        while (folding) moved += await statistics.fold(7, 40)
        return moved
      })()
      for (let round = 0; round < 6; round++) {
        writes.push(save(Array.from({ length: 25 }, (_, i) => ({ namespace: `n${(round + i) % 3}`, session_id: `s${i % 4}`, content: text(round * 100 + i) }))))
        writes.push(app.inject({ method: 'DELETE', url: `/v1/memories/${ids[round * 9]}` }))
        writes.push(app.inject({ method: 'POST', url: '/v1/turns', payload: { namespace: 'n1', user_input: text(round), assistant_response: text(round + 1) } }))
      }
      writes.push(app.inject({ method: 'DELETE', url: '/v1/memories?namespace=n2&session_id=s3' }))
      await Promise.all(writes)
      folding = false
      await folds
      const expected = await recount(store.db)
      // Read before the last fold: the counters plus what still waits.
      for (const [namespace, [memories, terms]] of expected.namespaces) {
        const words = ['ledger', 'export', 'queue', 'team', 't1', 'note']
        const read = await statistics.read(namespace, words)
        assert.equal(read.memories, memories, `${namespace} memories`)
        assert.ok(Math.abs(read.averageLength - terms / memories) < 1e-9, `${namespace} average length`)
        for (const word of words) assert.equal(read.frequencies.get(word), expected.terms.get(`${namespace}/${word}`) ?? 0, `${namespace}/${word}`)
      }
      while ((await statistics.fold(1000, 1_000_000)) > 0);
      assert.equal(await statistics.backlog(), 0)
      assert.deepEqual(await counters(store.db), expected)
    })

    test('the background folder counts what was saved soon after, without being asked', async () => {
      await store.reset()
      const running = await buildTestApp(store.db, {}, { vectorIndexer: false })
      try {
        const res = await running.inject({ method: 'POST', url: '/v1/memories', payload: { namespace: 'bg', content: 'ledger export' } })
        assert.equal(res.statusCode, 201)
        const statistics = createTermStatistics(store.db)
        const deadline = Date.now() + 10_000
        while ((await statistics.backlog()) > 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50))
        assert.equal(await statistics.backlog(), 0)
        assert.deepEqual((await counters(store.db)).namespaces.get('bg')?.[0], 1)
      } finally {
        await running.close()
      }
    })

    test('a fold stops at its term budget, but always takes one memory: long texts of unique tokens are counted a few at a time', async () => {
      await store.reset()
      const statistics = createTermStatistics(store.db)
      // 300 distinct terms each, past a budget of 250: one memory per fold, on both sides.
      const long = (n: number) => Array.from({ length: 300 }, (_, i) => `w${n}x${i}`).join(' ')
      const ids = await save([0, 1, 2].map((n) => ({ namespace: 'long', content: long(n) })))
      assert.deepEqual([await statistics.fold(100, 250), await statistics.fold(100, 250), await statistics.fold(100, 250), await statistics.fold(100, 250)], [1, 1, 1, 0])
      assert.deepEqual((await counters(store.db)).namespaces.get('long'), [3, 900])
      for (const id of ids.slice(0, 2)) assert.equal((await app.inject({ method: 'DELETE', url: `/v1/memories/${id}` })).statusCode, 204)
      assert.deepEqual([await statistics.fold(100, 250), await statistics.fold(100, 250), await statistics.fold(100, 250)], [1, 1, 0])
      assert.deepEqual(await counters(store.db), await recount(store.db))
      // Short memories share one fold up to the budget.
      await save(Array.from({ length: 10 }, (_, i) => ({ namespace: 'short', content: `alpha beta ${i}` })))
      assert.equal(await statistics.fold(100, 12), 4)
    })

    test('deleting a whole namespace leaves no counter behind', async () => {
      await store.reset()
      const statistics = createTermStatistics(store.db)
      await save([{ namespace: 'gone', content: 'ledger export' }, { namespace: 'kept', content: 'ledger page' }])
      await statistics.fold(100, 1_000_000)
      const res = await app.inject({ method: 'DELETE', url: '/v1/memories?namespace=gone' })
      assert.equal(res.json().deleted, 1)
      await statistics.fold(100, 1_000_000)
      const { terms, namespaces } = await counters(store.db)
      assert.deepEqual([...namespaces.keys()], ['kept'])
      assert.deepEqual([...terms.keys()].sort(), ['kept/ledger', 'kept/page'])
    })

    describe('text candidates by the namespace\'s own statistics', () => {
      const ns = 'term-stats'
      let rareId: string
      // Past both bounds: more memories than are scored for rare terms, and than are read for common ones.
      const FILL = Math.max(SCORED_MEMORIES, COMMON_TERM_SCAN) + 200

      before(async () => {
        await store.reset()
        // The rare memory is a day older than the rest: it is never among the newest memories holding a common word.
        const dayAgo = new Date(Date.now() - 86_400_000).toISOString()
        rareId = (await save([{ namespace: ns, role: 'assistant', content: 'Routine deployment report: the quuxFrobnicator flag broke the canary.', created_at: dayAgo }]))[0]!
        const services = ['billing', 'ledger', 'search', 'auth', 'gateway', 'mailer', 'reports', 'exports', 'cache', 'queue']
        for (let start = 0; start < FILL; start += 1000) {
          await save(Array.from({ length: Math.min(1000, FILL - start) }, (_, j) => {
            const i = start + j
            return { namespace: ns, content: `Routine deployment report ${i}: service ${services[i % services.length]} shipped build b${i} on node n${i % 97}.` }
          }))
        }
        // Where "deployment" is rare: a namespace of two.
        await save([{ namespace: 'small', content: 'The deployment of the billing service waits for approval.' }, { namespace: 'small', content: 'Lunch is at noon.' }])
        await app.termStatisticsFolder.drainOnce()
      })

      const recall = async (body: Record<string, unknown>, namespace = ns): Promise<Hit[]> => {
        const res = await app.inject({ method: 'POST', url: '/v1/recall', payload: { namespace, ...body } })
        assert.equal(res.statusCode, 200, `${JSON.stringify(body)}: ${res.body}`)
        return res.json().results
      }

      for (const mode of ['text', 'hybrid', 'vector'] as const) {
        test(`${mode}: a common word plus a rare identifier finds the rare memory first`, async () => {
          const hits = await recall({ query: 'deployment quuxFrobnicator', mode, k: 5 })
          assert.equal(hits[0]?.id, rareId, JSON.stringify(hits.map((h) => h.content)))
          assert.deepEqual(hits[0]!.matched_terms.sort(), ['deploy', 'frobnic', 'quux', 'quuxfrobnic'])
        })

        test(`${mode}: only common words still return k results, best first`, async () => {
          const hits = await recall({ query: 'routine deployment report', mode, k: 10 })
          assert.equal(hits.length, 10)
          assert.ok(hits.every((h) => h.matched_terms.length === 3), 'every hit holds all the words')
          for (let i = 1; i < hits.length; i++) assert.ok(hits[i - 1]!.score >= hits[i]!.score)
        })
      }

      test('only common words, and a filter that only a memory older than those read for common terms passes: it is found', async () => {
        const hits = await recall({ query: 'routine deployment report', mode: 'text', k: 3, filter: { role: ['assistant'] } })
        assert.deepEqual(hits.map((h) => h.id), [rareId])
      })

      test('a rare word weighs more than a common one: the memory holding it outranks those holding only the common one', async () => {
        const hits = await recall({ query: 'deployment canary', mode: 'text', k: 5 })
        assert.equal(hits[0]?.id, rareId)
        assert.ok(hits[0]!.scores.text! > 2 * hits[1]!.scores.text!, JSON.stringify(hits.slice(0, 2).map((h) => h.scores)))
      })

      test('a common word plus a word no memory holds (a typo) still finds the memories holding the common word', async () => {
        const hits = await recall({ query: 'deployment xyzzyq', mode: 'text', k: 5 })
        assert.equal(hits.length, 5, JSON.stringify(hits))
      })

      test('in a small namespace, a word common in another namespace is rare, and finds its memory', async () => {
        const hits = await recall({ query: 'deployment canary', mode: 'text', k: 5 }, 'small')
        assert.match(hits[0]?.content ?? '', /deployment of the billing/)
      })
    })
  })
}
