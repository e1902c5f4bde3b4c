import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'
import { after, before, describe, test } from 'node:test'
import type { FastifyInstance, InjectOptions } from 'fastify'
import { backends, buildTestApp, type TestStore } from '../helper.js'

/**
 * The proof of the Access section: two keys scoped to different namespaces, each with every permission in
 * its own, and for every route (hooks included) neither can read, list, recall, count or delete the other's memories.
 */
interface Tenant {
  key: string
  namespace: string
  /** The working directory its hooks report; HOOK_NAMESPACE_MAP maps it to `namespace`. */
  cwd: string
  /** A phrase only this tenant's memories contain. */
  word: string
  ids: string[]
}

const alpha: Tenant = { key: 'alpha-secret-0123456789abcdef', namespace: 'team-a/app', cwd: '/work/alpha', word: 'aardvark ledger export', ids: [] }
const beta: Tenant = { key: 'beta-secret-0123456789abcdef00', namespace: 'team-b/app', cwd: '/work/beta', word: 'zebra invoice pagination', ids: [] }

const hookPayload = (tenant: Tenant, event: string, extra: Record<string, unknown> = {}) => ({
  session_id: `hook-${tenant.namespace}`,
  transcript_path: '/nonexistent.jsonl',
  cwd: tenant.cwd,
  hook_event_name: event,
  ...extra
})

for (const backend of backends()) {
  describe(`two keys, two namespaces, no crossing on ${backend.name}`, () => {
    let store: TestStore
    let app: FastifyInstance
    let hooksExist = false
    before(async () => {
      store = await backend.create()
      app = await buildTestApp(store.db, {
        SAGE_API_KEYS: `alpha:${alpha.key}=team-a/*:delete;beta:${beta.key}=team-b/*:delete`,
        HOOK_NAMESPACE_MAP: `${alpha.cwd}=${alpha.namespace},${beta.cwd}=${beta.namespace}`,
        HOOK_DEADLINE_MS: 5_000
      })
      hooksExist = app.hasRoute({ method: 'POST', url: '/hooks/claude-code' })
      for (const tenant of [alpha, beta]) {
        tenant.ids = []
        await seed(tenant)
      }
    })
    after(async () => {
      await app?.close()
      await store?.drop()
    })

    const as = (tenant: Tenant, options: InjectOptions) =>
      app.inject({ ...options, headers: { ...options.headers, authorization: `Bearer ${tenant.key}` } })

    async function seed(tenant: Tenant) {
      const { namespace, word } = tenant
      const one = await as(tenant, { method: 'POST', url: '/v1/memories', payload: { namespace, session_id: 's1', content: `${word}: the single save` } })
      assert.equal(one.statusCode, 201, one.body)
      tenant.ids.push(one.json().id)
      const batch = await as(tenant, { method: 'POST', url: '/v1/memories/batch', payload: { items: [{ namespace, session_id: 's1', content: `${word}: batch one` }, { namespace, session_id: 's2', content: `${word}: batch two` }] } })
      assert.equal(batch.statusCode, 201, batch.body)
      tenant.ids.push(...batch.json().items.map((item: { id: string }) => item.id))
      const turn = await as(tenant, { method: 'POST', url: '/v1/turns', payload: { namespace, session_id: 's3', user_input: `${word}?`, assistant_response: `${word}: the answer` } })
      assert.equal(turn.statusCode, 201, turn.body)
      tenant.ids.push(...turn.json().ids)
      if (hooksExist) {
        const hook = await as(tenant, { method: 'POST', url: '/hooks/claude-code', payload: hookPayload(tenant, 'UserPromptSubmit', { prompt: `${word}: asked through the hook` }) })
        assert.equal(hook.statusCode, 200, hook.body)
      }
    }

    const stored = async (tenant: Tenant) =>
      (await store.db.query<{ n: number }>('SELECT count(*)::int AS n FROM memories WHERE namespace = $1', [tenant.namespace])).rows[0]!.n

    for (const [me, other] of [[alpha, beta], [beta, alpha]] as const) {
      const label = `${me === alpha ? 'alpha' : 'beta'} against ${other === alpha ? 'alpha' : 'beta'}`

      test(`${label}: reading the other's memories by id is a 404 like a missing id`, async () => {
        const missing = await as(me, { method: 'GET', url: `/v1/memories/${randomUUID()}` })
        for (const id of other.ids) {
          const res = await as(me, { method: 'GET', url: `/v1/memories/${id}` })
          assert.equal(res.statusCode, 404)
          assert.equal(res.body, missing.body)
        }
        // Its own read back fine, so the 404 above is about the scope, not the route.
        for (const id of me.ids) assert.equal((await as(me, { method: 'GET', url: `/v1/memories/${id}` })).statusCode, 200)
      })

      test(`${label}: listing, recalling and counting sessions of the other's namespace are 403`, async () => {
        const refused: InjectOptions[] = [
          { method: 'GET', url: `/v1/memories?namespace=${other.namespace}` },
          { method: 'GET', url: `/v1/memories?namespace=${other.namespace}&session_id=s1&limit=500` },
          { method: 'POST', url: '/v1/recall', payload: { query: other.word, namespace: other.namespace } },
          { method: 'POST', url: '/v1/recall', payload: { query: other.word, namespace: other.namespace, mode: 'text', format: 'context' } },
          { method: 'GET', url: `/v1/sessions?namespace=${other.namespace}` },
          // Leaving the namespace out means "default", which neither key covers.
          { method: 'GET', url: '/v1/memories' },
          { method: 'GET', url: '/v1/sessions' },
          { method: 'POST', url: '/v1/recall', payload: { query: other.word } }
        ]
        for (const options of refused) {
          const res = await as(me, options)
          assert.equal(res.statusCode, 403, `${options.method} ${options.url}: ${res.body}`)
          assert.equal(res.json().code, 'SAGE_FORBIDDEN')
          assert.ok(!res.body.includes(other.word.split(' ')[0]!))
        }
      })

      test(`${label}: its own list, recall and sessions hold only its own memories`, async () => {
        const list = (await as(me, { method: 'GET', url: `/v1/memories?namespace=${me.namespace}&limit=500` })).json()
        assert.ok(list.items.length >= me.ids.length)
        for (const item of list.items) assert.equal(item.namespace, me.namespace)
        // The other's words, recalled in its own namespace: only its own memories can come back.
        for (const mode of ['hybrid', 'vector', 'text']) {
          const recall = await as(me, { method: 'POST', url: '/v1/recall', payload: { query: `${other.word} ${me.word}`, namespace: me.namespace, k: 50, mode, format: 'context' } })
          assert.equal(recall.statusCode, 200, recall.body)
          const body = recall.json()
          assert.ok(body.results.length > 0)
          for (const hit of body.results) {
            assert.equal(hit.namespace, me.namespace)
            assert.ok(!other.ids.includes(hit.id))
          }
          assert.ok(!body.context.includes(other.word))
        }
        const sessions = (await as(me, { method: 'GET', url: `/v1/sessions?namespace=${me.namespace}` })).json()
        const total = sessions.items.reduce((sum: number, s: { count: number }) => sum + s.count, 0)
        assert.equal(total, await stored(me))
      })

      test(`${label}: deleting the other's memories is a 404 or 403 and deletes nothing`, async () => {
        const before = await stored(other)
        const missing = await as(me, { method: 'DELETE', url: `/v1/memories/${randomUUID()}` })
        for (const id of other.ids) {
          const res = await as(me, { method: 'DELETE', url: `/v1/memories/${id}` })
          assert.equal(res.statusCode, 404)
          assert.equal(res.body, missing.body)
        }
        for (const url of [`/v1/memories?namespace=${other.namespace}`, `/v1/memories?namespace=${other.namespace}&session_id=s1`]) {
          assert.equal((await as(me, { method: 'DELETE', url })).statusCode, 403, url)
        }
        assert.equal(await stored(other), before)
        const audit = await store.db.query('SELECT 1 FROM delete_audit WHERE namespace = $1', [other.namespace])
        assert.equal(audit.rows.length, 0)
      })

      test(`${label}: writing into the other's namespace is 403 and writes nothing`, async () => {
        const before = await stored(other)
        const writes: InjectOptions[] = [
          { method: 'POST', url: '/v1/memories', payload: { namespace: other.namespace, content: 'planted' } },
          { method: 'POST', url: '/v1/memories/batch', payload: { items: [{ namespace: me.namespace, content: 'mine' }, { namespace: other.namespace, content: 'planted' }] } },
          { method: 'POST', url: '/v1/turns', payload: { namespace: other.namespace, user_input: 'planted', assistant_response: 'planted' } }
        ]
        for (const options of writes) assert.equal((await as(me, options)).statusCode, 403, String(options.url))
        assert.equal(await stored(other), before)
      })

      test(`${label}: hooks neither save into nor recall from the other's namespace`, async (t) => {
        if (!hooksExist) return t.skip('no /hooks/claude-code route')
        const before = await stored(other)
        const mine = await stored(me)
        const attempts = [
          // The other's working directory maps to the other's namespace.
          { url: '/hooks/claude-code', payload: hookPayload(other, 'UserPromptSubmit', { prompt: `${other.word}: what did we decide?` }) },
          { url: '/hooks/claude-code', payload: hookPayload(other, 'Stop', { last_assistant_message: 'planted through a hook' }) },
          { url: '/hooks/claude-code', payload: hookPayload(other, 'SessionStart', { source: 'startup' }) },
          { url: '/hooks/claude-code', payload: hookPayload(other, 'PostCompact', { trigger: 'auto', compact_summary: 'planted summary' }) },
          // Naming the other's namespace outright.
          { url: `/hooks/claude-code?namespace=${other.namespace}`, payload: hookPayload(me, 'UserPromptSubmit', { prompt: `${other.word}: what did we decide?` }) }
        ]
        for (const attempt of attempts) {
          const res = await as(me, { method: 'POST', ...attempt })
          assert.equal(res.statusCode, 200, res.body)
          assert.deepEqual(res.json(), {}, `${attempt.url} ${attempt.payload.hook_event_name}: ${res.body}`)
        }
        // From its own directory, with words of the other's memories (but not the first, which marks them), the
        // context holds only its own: this prompt is saved in its own namespace and must not carry that mark.
        const otherWords = other.word.split(' ').slice(1).join(' ')
        const own = await as(me, { method: 'POST', url: '/hooks/claude-code', payload: hookPayload(me, 'UserPromptSubmit', { session_id: 'fresh', prompt: `${me.word} and ${otherWords}` }) })
        assert.equal(own.statusCode, 200)
        const context = own.json().hookSpecificOutput?.additionalContext ?? ''
        assert.ok(context.includes(me.word.split(' ')[0]!), `expected its own memories in: ${context}`)
        assert.ok(!context.includes(other.word.split(' ')[0]!), context)
        const start = await as(me, { method: 'POST', url: '/hooks/claude-code', payload: hookPayload(me, 'SessionStart', { session_id: 'fresh2', source: 'startup' }) })
        assert.ok(!start.body.includes(other.word.split(' ')[0]!), start.body)
        assert.equal(await stored(other), before)
        assert.ok((await stored(me)) >= mine)
      })

      test(`${label}: without any key, hooks and /v1 are 401`, async () => {
        for (const options of [
          { method: 'POST' as const, url: '/v1/recall', payload: { query: other.word, namespace: other.namespace } },
          { method: 'GET' as const, url: `/v1/memories/${other.ids[0]}` },
          ...(hooksExist ? [{ method: 'POST' as const, url: '/hooks/claude-code', payload: hookPayload(other, 'UserPromptSubmit', { prompt: other.word }) }] : [])
        ]) {
          const res = await app.inject(options)
          assert.equal(res.statusCode, 401, `${options.url}: ${res.body}`)
          assert.ok(!res.body.includes(other.word.split(' ')[0]!))
        }
      })
    }

    test('after all of it, each namespace still holds everything it saved', async () => {
      for (const tenant of [alpha, beta]) {
        for (const id of tenant.ids) assert.equal((await as(tenant, { method: 'GET', url: `/v1/memories/${id}` })).statusCode, 200)
        const { rows } = await store.db.query<{ n: number }>("SELECT count(*)::int AS n FROM memories WHERE content LIKE '%planted%'")
        assert.equal(rows[0]!.n, 0)
      }
    })
  })
}
