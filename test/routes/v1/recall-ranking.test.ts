import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { backends, useTestApp } from '../../helper.js'

// What ranking promises beyond BM25 itself (README, "How recall works"): scores that keep their meaning, the memory
// that states a fact above the one that asked for it, near-copies counted once, the newest version of a fact first.

interface Hit {
  id: string
  content: string
  created_at: string
  score: number
  scores: { vector: number | null; text: number | null }
  matched_terms: string[]
}

for (const backend of backends()) {
  describe(`recall ranking on ${backend.name}`, () => {
    const suite = useTestApp(backend)
    const save = async (items: object[]) => {
      const res = await suite.app.inject({ method: 'POST', url: '/v1/memories/batch', payload: { items } })
      assert.equal(res.statusCode, 201, res.body)
      return (res.json().items as Array<{ id: string }>).map((item) => item.id)
    }
    const recall = async (body: Record<string, unknown>): Promise<Hit[]> => {
      const res = await suite.app.inject({ method: 'POST', url: '/v1/recall', payload: body })
      assert.equal(res.statusCode, 200, res.body)
      return res.json().results
    }

    test('scores.text stays below 1 when every query word occurs, and says which terms matched', async () => {
      await suite.store.reset()
      await save([
        { namespace: 'sat', content: 'Ledger export uses keyset pagination.' },
        { namespace: 'sat', content: 'The ledger export uses keyset pagination on (account_id, posted_at, id), pages of 2,000 rows, streamed to S3.' },
        { namespace: 'sat', content: 'Invoices are numbered per account.' }
      ])
      const hits = await recall({ namespace: 'sat', query: 'ledger export pagination', mode: 'text', k: 5 })
      assert.equal(hits.length, 2)
      for (const hit of hits) {
        assert.deepEqual(hit.matched_terms.sort(), ['export', 'ledger', 'pagin'])
        assert.ok(hit.scores.text! > 0 && hit.scores.text! < 1, String(hit.scores.text))
      }
      // Both hold every word; the shorter says it more directly, and the scores tell them apart.
      const [short, long] = ['Ledger export uses', 'The ledger export'].map((start) => hits.find((h) => h.content.startsWith(start))!)
      assert.ok(short!.scores.text! > long!.scores.text!, JSON.stringify(hits.map((h) => h.scores)))
    })

    test('the answer ranks above the question that asked for it', async () => {
      await suite.store.reset()
      await save([
        { namespace: 'qa', session_id: 's1', role: 'user', content: 'Why does the ledger export time out for big accounts?', created_at: '2026-09-02T09:00:00Z' },
        { namespace: 'qa', session_id: 's1', role: 'assistant', content: 'Each page rescanned the rows before it (OFFSET); keyset pagination fixed it, and a million rows now take 40 seconds.', created_at: '2026-09-02T09:01:00Z' },
        { namespace: 'qa', session_id: 's2', role: 'assistant', content: 'Invoices for big accounts are rendered page by page.', created_at: '2026-09-03T09:00:00Z' }
      ])
      for (const mode of ['hybrid', 'text']) {
        const hits = await recall({ namespace: 'qa', query: 'why does the ledger export time out', mode, k: 3 })
        assert.match(hits[0]!.content, /keyset pagination fixed it/, `${mode}: ${hits.map((h) => h.content).join(' | ')}`)
        assert.match(hits[1]!.content, /^Why does the ledger export/)
      }
    })

    test('near-copies count once, the newest standing for them, and k results are k different facts', async () => {
      await suite.store.reset()
      const copies = Array.from({ length: 4 }, (_, i) => ({
        namespace: 'dup', content: `Reminder: the staging database is reset every night at 02:00${'!'.repeat(i)}`, created_at: `2026-10-0${i + 1}T10:00:00Z`
      }))
      await save([...copies, { namespace: 'dup', content: 'The staging database holds a copy of last week\'s production data, anonymised.', created_at: '2026-09-01T10:00:00Z' }])
      const hits = await recall({ namespace: 'dup', query: 'when is the staging database reset', mode: 'hybrid', k: 2 })
      assert.equal(hits.length, 2)
      assert.equal(hits[0]!.created_at, '2026-10-04T10:00:00.000Z', 'the newest copy')
      assert.match(hits[1]!.content, /anonymised/)
      // A time range still reaches the older copies: within it, the newest is another.
      const older = await recall({ namespace: 'dup', query: 'when is the staging database reset', mode: 'hybrid', k: 2, filter: { until: '2026-10-02T12:00:00Z' } })
      assert.equal(older[0]!.created_at, '2026-10-02T10:00:00.000Z')
    })

    test('of the versions of a decision, the newest comes first, the older ones after it', async () => {
      await suite.store.reset()
      await save([
        { namespace: 'ver', content: 'Decision: the pricing cache keeps entries for 10 minutes.', created_at: '2026-09-09T10:00:00Z' },
        { namespace: 'ver', content: 'Decision: the pricing cache now keeps entries for 60 seconds, because price changes must show within a minute.', created_at: '2026-10-10T10:00:00Z' },
        { namespace: 'ver', content: 'CI caches the pnpm store between runs.', created_at: '2026-10-11T10:00:00Z' }
      ])
      for (const mode of ['hybrid', 'text']) {
        const hits = await recall({ namespace: 'ver', query: 'pricing cache decision', mode, k: 3 })
        assert.match(hits[0]!.content, /60 seconds/, mode)
        assert.match(hits[1]!.content, /10 minutes/, mode)
        for (let i = 1; i < hits.length; i++) assert.ok(hits[i - 1]!.score >= hits[i]!.score, 'still best first')
      }
      const before = await recall({ namespace: 'ver', query: 'pricing cache decision', mode: 'hybrid', k: 3, filter: { until: '2026-10-01T00:00:00Z' } })
      assert.match(before[0]!.content, /10 minutes/)
    })

    test('what was said right after a matching question comes with it, even sharing no word with the query', async () => {
      await suite.store.reset()
      await save([
        { namespace: 'next', session_id: 'c', role: 'user', content: 'Caroline: What did you paint recently, Melanie?', created_at: '2023-05-08T13:00:00Z' },
        { namespace: 'next', session_id: 'c', role: 'user', content: 'Melanie: A sunrise over the lake, last week.', created_at: '2023-05-08T13:00:01Z' },
        { namespace: 'next', session_id: 'd', role: 'user', content: 'Caroline: I recently moved house.', created_at: '2023-06-08T13:00:00Z' }
      ])
      const hits = await recall({ namespace: 'next', query: 'what did Melanie paint recently', mode: 'text', k: 3 })
      const ranks = hits.map((h) => h.content.slice(0, 18))
      assert.deepEqual(ranks, ['Melanie: A sunrise', 'Caroline: What did', 'Caroline: I recent'])
      assert.deepEqual(hits[0]!.matched_terms, ['melani'], 'the speaker alone: it is found as the answer')
    })
  })
}
