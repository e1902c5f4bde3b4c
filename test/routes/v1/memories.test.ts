import assert from 'node:assert/strict'
import { beforeEach, describe, test } from 'node:test'
import { backends, memoryCount, useTestApp } from '../../helper.js'

for (const backend of backends()) {
  describe(`memories on ${backend.name}`, () => {
    const suite = useTestApp(backend)
    beforeEach(() => suite.store.reset())

    const count = () => memoryCount(suite.store.db)

    test('saves one memory and reads it back as normalised', async () => {
      const res = await suite.app.inject({
        method: 'POST',
        url: '/v1/memories',
        payload: { namespace: 'proj', session_id: 's1', role: 'user', content: '  rotate the\u0000 API keys  ', metadata: { cwd: '/src/app' }, tags: ['ops', 'ops'] }
      })
      assert.equal(res.statusCode, 201, res.body)
      const { id, created } = res.json()
      assert.equal(created, true)
      const read = await suite.app.inject({ method: 'GET', url: `/v1/memories/${id}` })
      assert.equal(read.statusCode, 200)
      const memory = read.json()
      assert.equal(memory.content, 'rotate the API keys')
      assert.equal(memory.namespace, 'proj')
      assert.equal(memory.session_id, 's1')
      assert.equal(memory.role, 'user')
      assert.deepEqual(memory.metadata, { cwd: '/src/app' })
      assert.deepEqual(memory.tags, ['ops'])
      assert.match(memory.created_at, /^\d{4}-\d\d-\d\dT/)
    })

    test('defaults: namespace "default", role "note"', async () => {
      const res = await suite.app.inject({ method: 'POST', url: '/v1/memories', payload: { content: 'hello' } })
      const memory = (await suite.app.inject({ method: 'GET', url: `/v1/memories/${res.json().id}` })).json()
      assert.equal(memory.namespace, 'default')
      assert.equal(memory.role, 'note')
      assert.equal(memory.source_id, null)
    })

    test('a retried save with the same Idempotency-Key answers 200 with the first id and writes one row', async () => {
      const send = () => suite.app.inject({ method: 'POST', url: '/v1/memories', headers: { 'idempotency-key': 'abc-1' }, payload: { namespace: 'p', content: 'once' } })
      const first = await send()
      const second = await send()
      assert.equal(first.statusCode, 201)
      assert.equal(second.statusCode, 200)
      assert.deepEqual(second.json(), { id: first.json().id, created: false })
      assert.equal(await count(), 1)
      // The same key in another namespace is another memory.
      const other = await suite.app.inject({ method: 'POST', url: '/v1/memories', headers: { 'idempotency-key': 'abc-1' }, payload: { namespace: 'q', content: 'once' } })
      assert.equal(other.statusCode, 201)
    })

    test('a retried save with the same source_id answers the first id', async () => {
      const payload = { namespace: 'p', content: 'from the transcript', source_id: 'line-1' }
      const first = await suite.app.inject({ method: 'POST', url: '/v1/memories', payload })
      const second = await suite.app.inject({ method: 'POST', url: '/v1/memories', payload: { ...payload, content: 'changed text' } })
      assert.equal(second.statusCode, 200)
      assert.equal(second.json().id, first.json().id)
      assert.equal(await count(), 1)
    })

    test('20 concurrent saves with one Idempotency-Key create one row and all answer its id', async () => {
      const replies = await Promise.all(
        Array.from({ length: 20 }, () =>
          suite.app.inject({ method: 'POST', url: '/v1/memories', headers: { 'idempotency-key': 'race' }, payload: { content: 'racing' } })
        )
      )
      const ids = new Set(replies.map((r) => r.json().id))
      assert.equal(ids.size, 1)
      assert.equal(replies.filter((r) => r.statusCode === 201).length, 1)
      assert.equal(replies.filter((r) => r.statusCode === 200).length, 19)
      assert.equal(await count(), 1)
    })

    test('a batch saves every item in order, one transaction', async () => {
      const items = Array.from({ length: 5 }, (_, i) => ({ namespace: 'b', content: `item ${i}`, source_id: `s-${i}` }))
      const res = await suite.app.inject({ method: 'POST', url: '/v1/memories/batch', payload: { items } })
      assert.equal(res.statusCode, 201, res.body)
      const results = res.json().items
      assert.equal(results.length, 5)
      assert.ok(results.every((r: { created: boolean }) => r.created))
      for (const [i, r] of results.entries()) {
        const memory = (await suite.app.inject({ method: 'GET', url: `/v1/memories/${r.id}` })).json()
        assert.equal(memory.content, `item ${i}`)
      }
    })

    test('a batch with one invalid item is a 400 naming its index and writes nothing', async () => {
      const items = [{ content: 'fine' }, { content: 'fine too' }, { content: 'ok' }, { content: '' }]
      const res = await suite.app.inject({ method: 'POST', url: '/v1/memories/batch', payload: { items } })
      assert.equal(res.statusCode, 400)
      const body = res.json()
      assert.equal(body.code, 'SAGE_VALIDATION')
      assert.equal(body.error, 'Bad Request')
      assert.match(body.message, /items\[3\]\.content/)
      assert.equal(await count(), 0)
    })

    test('a batch whose item is empty only after normalisation is refused whole', async () => {
      const items = [{ content: 'fine' }, { content: '\u0000\u0001  ' }]
      const res = await suite.app.inject({ method: 'POST', url: '/v1/memories/batch', payload: { items } })
      assert.equal(res.statusCode, 400)
      assert.match(res.json().message, /items\[1\]\.content/)
      assert.equal(await count(), 0)
    })

    test('duplicates inside one batch and across retries answer the first id', async () => {
      const items = [
        { namespace: 'd', content: 'a', source_id: 'x' },
        { namespace: 'd', content: 'b', source_id: 'x' }
      ]
      const res = await suite.app.inject({ method: 'POST', url: '/v1/memories/batch', headers: { 'idempotency-key': 'batch-1' }, payload: { items } })
      const [a, b] = res.json().items
      assert.equal(a.created, true)
      assert.deepEqual(b, { id: a.id, created: false })
      const retry = await suite.app.inject({ method: 'POST', url: '/v1/memories/batch', headers: { 'idempotency-key': 'batch-1' }, payload: { items } })
      assert.deepEqual(retry.json().items, [{ id: a.id, created: false }, { id: a.id, created: false }])
      assert.equal(await count(), 1)
    })

    test('lists newest first with a cursor that pages through everything once', async () => {
      const items = Array.from({ length: 7 }, (_, i) => ({ namespace: 'l', session_id: i % 2 ? 'odd' : 'even', content: `m${i}`, created_at: new Date(Date.UTC(2026, 0, 1, 0, 0, i)).toISOString() }))
      await suite.app.inject({ method: 'POST', url: '/v1/memories/batch', payload: { items } })
      const seen: string[] = []
      let cursor: string | null = null
      do {
        const url: string = `/v1/memories?namespace=l&limit=3${cursor ? `&cursor=${cursor}` : ''}`
        const page = (await suite.app.inject({ method: 'GET', url })).json()
        seen.push(...page.items.map((m: { content: string }) => m.content))
        cursor = page.next_cursor
      } while (cursor)
      assert.deepEqual(seen, ['m6', 'm5', 'm4', 'm3', 'm2', 'm1', 'm0'])
      const odd = (await suite.app.inject({ method: 'GET', url: '/v1/memories?namespace=l&session_id=odd' })).json()
      assert.deepEqual(odd.items.map((m: { content: string }) => m.content), ['m5', 'm3', 'm1'])
      const bad = await suite.app.inject({ method: 'GET', url: '/v1/memories?namespace=l&cursor=nonsense' })
      assert.equal(bad.statusCode, 400)
    })

    test('deletes one memory, then 404', async () => {
      const { id } = (await suite.app.inject({ method: 'POST', url: '/v1/memories', payload: { content: 'forget me' } })).json()
      assert.equal((await suite.app.inject({ method: 'DELETE', url: `/v1/memories/${id}` })).statusCode, 204)
      assert.equal((await suite.app.inject({ method: 'GET', url: `/v1/memories/${id}` })).statusCode, 404)
      assert.equal((await suite.app.inject({ method: 'DELETE', url: `/v1/memories/${id}` })).statusCode, 404)
    })

    test('deletes a session or a namespace; namespace is required', async () => {
      const items = [
        { namespace: 'x', session_id: 'a', content: '1' },
        { namespace: 'x', session_id: 'a', content: '2' },
        { namespace: 'x', session_id: 'b', content: '3' },
        { namespace: 'y', session_id: 'a', content: '4' }
      ]
      await suite.app.inject({ method: 'POST', url: '/v1/memories/batch', payload: { items } })
      assert.equal((await suite.app.inject({ method: 'DELETE', url: '/v1/memories' })).statusCode, 400)
      assert.deepEqual((await suite.app.inject({ method: 'DELETE', url: '/v1/memories?namespace=x&session_id=a' })).json(), { deleted: 2 })
      assert.deepEqual((await suite.app.inject({ method: 'DELETE', url: '/v1/memories?namespace=x' })).json(), { deleted: 1 })
      assert.equal(await count(), 1)
    })

    test('sessions of a namespace with counts and times', async () => {
      const items = [
        { namespace: 's', session_id: 'one', content: 'a', created_at: '2026-01-01T00:00:00.000Z' },
        { namespace: 's', session_id: 'one', content: 'b', created_at: '2026-01-02T00:00:00.000Z' },
        { namespace: 's', session_id: 'two', content: 'c', created_at: '2026-01-03T00:00:00.000Z' },
        { namespace: 's', content: 'no session' }
      ]
      await suite.app.inject({ method: 'POST', url: '/v1/memories/batch', payload: { items } })
      const res = await suite.app.inject({ method: 'GET', url: '/v1/sessions?namespace=s' })
      assert.deepEqual(res.json().items, [
        { session_id: 'two', count: 1, first_at: '2026-01-03T00:00:00.000Z', last_at: '2026-01-03T00:00:00.000Z' },
        { session_id: 'one', count: 2, first_at: '2026-01-01T00:00:00.000Z', last_at: '2026-01-02T00:00:00.000Z' }
      ])
    })

    test('a turn is two memories, user then assistant, in one transaction', async () => {
      const res = await suite.app.inject({
        method: 'POST',
        url: '/v1/turns',
        headers: { 'idempotency-key': 'turn-1' },
        payload: { user_input: 'how do I page the ledger?', assistant_response: 'Use keyset pagination.', session_id: 't', namespace: 'turns' }
      })
      assert.equal(res.statusCode, 201, res.body)
      const [userId, assistantId] = res.json().ids
      const user = (await suite.app.inject({ method: 'GET', url: `/v1/memories/${userId}` })).json()
      const assistant = (await suite.app.inject({ method: 'GET', url: `/v1/memories/${assistantId}` })).json()
      assert.equal(user.role, 'user')
      assert.equal(assistant.role, 'assistant')
      assert.ok(assistant.created_at > user.created_at)
      const retry = await suite.app.inject({
        method: 'POST',
        url: '/v1/turns',
        headers: { 'idempotency-key': 'turn-1' },
        payload: { user_input: 'how do I page the ledger?', assistant_response: 'Use keyset pagination.', session_id: 't', namespace: 'turns' }
      })
      assert.equal(retry.statusCode, 200)
      assert.deepEqual(retry.json().ids, [userId, assistantId])
      assert.equal(await count(), 2)
      const bad = await suite.app.inject({ method: 'POST', url: '/v1/turns', payload: { user_input: 'only half' } })
      assert.equal(bad.statusCode, 400)
      assert.equal(await count(), 2)
    })
  })
}
