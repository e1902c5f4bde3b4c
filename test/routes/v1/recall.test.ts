import assert from 'node:assert/strict'
import { beforeEach, describe, test } from 'node:test'
import { backends, useTestApp } from '../../helper.js'

interface Hit {
  id: string
  content: string
  namespace: string
  role: string
  score: number
  scores: { vector: number | null; text: number | null }
}

const MEMORIES = [
  { namespace: 'billing', role: 'assistant', content: 'I switched the ledger export to keyset pagination with pages of 5,000 rows and streamed the CSV.', tags: ['decision'] },
  { namespace: 'billing', role: 'user', content: 'The deploy pipeline fails on the docker build step since Tuesday.' },
  { namespace: 'billing', role: 'note', content: 'ERR_CONN_RESET from the payments gateway happens when the keep-alive timeout is shorter than the load balancer one.' },
  { namespace: 'billing', role: 'note', content: 'The function ledgerExport in src/export/ledger.ts builds the CSV.' },
  { namespace: 'billing', role: 'user', content: '把账本导出改成分页查询，每页五千行。' },
  { namespace: 'billing', role: 'assistant', content: 'API キーのローテーションは毎月行います。' },
  { namespace: 'billing', role: 'note', content: 'Our team lunch is on Fridays at the noodle place.' },
  { namespace: 'other', role: 'note', content: 'ledger export pagination in the other project, which must never leak.' }
]

for (const backend of backends()) {
  describe(`recall on ${backend.name}`, () => {
    const suite = useTestApp(backend)
    beforeEach(async () => {
      await suite.store.reset()
      const res = await suite.app.inject({ method: 'POST', url: '/v1/memories/batch', payload: { items: MEMORIES } })
      assert.equal(res.statusCode, 201, res.body)
    })

    const recall = async (body: Record<string, unknown>): Promise<{ results: Hit[]; took_ms: number; context?: string }> => {
      const res = await suite.app.inject({ method: 'POST', url: '/v1/recall', payload: { namespace: 'billing', ...body } })
      assert.equal(res.statusCode, 200, res.body)
      return res.json()
    }

    for (const mode of ['hybrid', 'vector', 'text'] as const) {
      test(`${mode}: a query sharing a few words finds the memory first`, async () => {
        const { results, took_ms } = await recall({ query: 'keyset pagination of the ledger export', mode })
        assert.ok(results.length > 0)
        assert.match(results[0]!.content, /keyset pagination/)
        assert.ok(took_ms >= 0)
        assert.ok(results.every((r) => r.namespace === 'billing'), 'never another namespace')
        for (let i = 1; i < results.length; i++) assert.ok(results[i - 1]!.score >= results[i]!.score, 'best first')
      })
    }

    test('hybrid: a question in plain words finds the decision first', async () => {
      const { results } = await recall({ query: 'what did we decide about paginating the ledger export?' })
      assert.match(results[0]!.content, /keyset pagination/)
    })

    test('nothing without any relevance is returned', async () => {
      const { results } = await recall({ query: 'ledger export pagination' })
      assert.ok(results.every((r) => r.score > 0))
      assert.ok(!results.some((r) => /team lunch/.test(r.content)) || results.find((r) => /team lunch/.test(r.content))!.score < 0.1)
    })

    test('hybrid reports both parts of the score', async () => {
      const { results } = await recall({ query: 'ledger export pagination' })
      const top = results[0]!
      assert.ok(top.score > 0 && top.score <= 1)
      assert.ok(top.scores.vector !== null && top.scores.vector > 0)
      assert.ok(top.scores.text !== null && top.scores.text > 0)
    })

    test('identifiers, error codes and paths recall', async () => {
      assert.match((await recall({ query: 'ERR_CONN_RESET' })).results[0]!.content, /payments gateway/)
      assert.match((await recall({ query: 'ledgerExport' })).results[0]!.content, /function ledgerExport/)
      assert.match((await recall({ query: 'src/export/ledger.ts', mode: 'text' })).results[0]!.content, /ledger\.ts/)
      assert.match((await recall({ query: 'conn reset errors' })).results[0]!.content, /ERR_CONN_RESET/)
    })

    test('Chinese and Japanese text recall by shared characters', async () => {
      assert.match((await recall({ query: '分页查询' })).results[0]!.content, /分页查询/)
      assert.match((await recall({ query: '账本导出', mode: 'text' })).results[0]!.content, /账本导出/)
      assert.match((await recall({ query: 'キーのローテーション' })).results[0]!.content, /ローテーション/)
    })

    test('filters combine with AND and the namespace is always enforced', async () => {
      const byRole = await recall({ query: 'ledger export pagination', filter: { role: ['user'] } })
      assert.ok(byRole.results.every((r) => r.role === 'user'))
      const byTag = await recall({ query: 'ledger', filter: { tags: ['decision'] } })
      assert.deepEqual(byTag.results.map((r) => r.content), [MEMORIES[0]!.content])
      const future = await recall({ query: 'ledger', filter: { since: '2999-01-01T00:00:00Z' } })
      assert.equal(future.results.length, 0)
      const other = await recall({ query: 'ledger export pagination', namespace: 'other' })
      assert.ok(other.results.length > 0 && other.results.every((r) => r.namespace === 'other'))
    })

    test('metadata filter is JSON containment', async () => {
      await suite.app.inject({ method: 'POST', url: '/v1/memories', payload: { namespace: 'meta', content: 'alpha deploy notes', metadata: { tool: 'claude-code', cwd: '/a' } } })
      await suite.app.inject({ method: 'POST', url: '/v1/memories', payload: { namespace: 'meta', content: 'alpha deploy notes again', metadata: { tool: 'codex' } } })
      const res = await recall({ namespace: 'meta', query: 'alpha deploy', filter: { metadata: { tool: 'claude-code' } } })
      assert.equal(res.results.length, 1)
      assert.equal(res.results[0]!.content, 'alpha deploy notes')
    })

    test('a filtered recall still returns k results when k matching rows exist', async () => {
      // Many memories that match the query but not the filter, few that match both: the filter must not starve k.
      const noise = Array.from({ length: 300 }, (_, i) => ({ namespace: 'starve', role: 'note', content: `deploy pipeline notes number ${i} about the build` }))
      const wanted = Array.from({ length: 10 }, (_, i) => ({ namespace: 'starve', role: 'user', content: `question ${i} about the deploy pipeline build`, tags: ['q'] }))
      for (const items of [noise, wanted]) {
        const res = await suite.app.inject({ method: 'POST', url: '/v1/memories/batch', payload: { items } })
        assert.equal(res.statusCode, 201)
      }
      for (const mode of ['hybrid', 'vector', 'text'] as const) {
        const { results } = await recall({ namespace: 'starve', query: 'deploy pipeline build', mode, k: 10, filter: { role: ['user'], tags: ['q'] } })
        assert.equal(results.length, 10, `${mode} returned ${results.length}`)
        assert.ok(results.every((r) => r.role === 'user'))
      }
    })

    test('k bounds the result count and min_score drops weak hits', async () => {
      assert.equal((await recall({ query: 'the ledger', k: 1 })).results.length, 1)
      const strict = await recall({ query: 'ledger export pagination', min_score: 0.99 })
      assert.ok(strict.results.every((r) => r.score >= 0.99))
    })

    test('format "context" returns one block cut to the token budget', async () => {
      const res = await recall({ query: 'ledger export pagination', format: 'context', token_budget: 60 })
      assert.ok(res.context)
      assert.match(res.context!, /keyset pagination/)
      assert.ok(res.context!.length <= 60 * 4 + 40, `context is ${res.context!.length} chars`)
      const plain = await recall({ query: 'ledger export pagination' })
      assert.equal(plain.context, undefined)
    })

    test('a query with no shared words finds nothing relevant by text', async () => {
      const { results } = await recall({ query: 'zebra giraffe', mode: 'text' })
      assert.equal(results.length, 0)
    })

    test('bad recall requests are 400s', async () => {
      for (const payload of [
        { query: '' },
        { query: 'x', k: 0 },
        { query: 'x', k: 51 },
        { query: 'x', k: 1e9 },
        { query: 'x', mode: 'semantic' },
        { query: 'x', filter: { role: ['boss'] } },
        { query: 'x', unknown: true },
        { query: 'x'.repeat(8001) },
        { query: 'x', filter: { since: 'yesterday' } },
        { query: 123 },
        { query: '\u0000\u0000' }
      ]) {
        const res = await suite.app.inject({ method: 'POST', url: '/v1/recall', payload })
        assert.equal(res.statusCode, 400, `${JSON.stringify(payload).slice(0, 80)} -> ${res.statusCode} ${res.body}`)
        assert.equal(res.json().code, 'SAGE_VALIDATION')
      }
    })
  })
}
