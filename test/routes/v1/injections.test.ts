import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, beforeEach, describe, test } from 'node:test'
import type { FastifyInstance, InjectOptions } from 'fastify'
import { backends, buildTestApp, memoryCount, REPO_ROOT, type TestStore } from '../../helper.js'

const FIXTURES = join(REPO_ROOT, 'test/fixtures/claude-code')
const fixture = (name: string) => JSON.parse(readFileSync(join(FIXTURES, name), 'utf8')) as Record<string, unknown>

const SECRETS = { reader: 'reader-secret-0123456789abcdef', admin: 'admin-secret-0123456789abcdef00', other: 'other-secret-0123456789abcdef00' }
const KEYS = [`reader:${SECRETS.reader}=team-a/*`, `admin:${SECRETS.admin}=*:delete`, `other:${SECRETS.other}=team-b/*:delete`].join(';')
const NS = 'team-a/billing'
const LATER_SESSION = fixture('session-start.json').session_id as string
const EARLIER_SESSION = fixture('stop.json').session_id as string

interface InjectionItem {
  id: string
  event: string
  session_id: string | null
  prompt: string | null
  outcome: string
  prompt_memory_id: string | null
  hits: Array<{ id: string; injected: boolean; rule: string; score?: number; scores?: Record<string, unknown>; memory: { content: string } | null }>
}

for (const backend of backends()) {
  describe(`GET /v1/namespaces, /v1/injections and /v1/access on ${backend.name}`, () => {
    let store: TestStore
    let app: FastifyInstance
    let scratch: string
    before(async () => {
      store = await backend.create()
      app = await buildTestApp(store.db, { SAGE_API_KEYS: KEYS, HOOK_DEADLINE_MS: 5_000 })
      scratch = await mkdtemp(join(tmpdir(), 'sage-injections-'))
    })
    after(async () => {
      await app?.close()
      await store?.drop()
      await rm(scratch, { recursive: true, force: true })
    })
    beforeEach(async () => {
      await store.reset()
      await store.db.query('TRUNCATE injections, namespace_activity')
    })

    const as = (secret: string, options: InjectOptions) => app.inject({ ...options, headers: { ...options.headers, authorization: `Bearer ${secret}` } })
    const hook = async (secret: string, body: Record<string, unknown>, query = `?namespace=${encodeURIComponent(NS)}`) => {
      const res = await as(secret, { method: 'POST', url: `/hooks/claude-code${query}`, payload: body })
      assert.equal(res.statusCode, 200, res.body)
      return res.json() as Record<string, unknown>
    }
    const injections = async (secret: string, query = `namespace=${encodeURIComponent(NS)}`) => {
      await app.injections.flush()
      const res = await as(secret, { method: 'GET', url: `/v1/injections?${query}` })
      assert.equal(res.statusCode, 200, res.body)
      return res.json().items as InjectionItem[]
    }
    /** An earlier session's answer and summary, then a later session's prompt about the same thing. */
    const driveSession = async (secret = SECRETS.admin) => {
      await hook(secret, fixture('stop.json'))
      await hook(secret, fixture('post-compact.json'))
      const answer = await hook(secret, { ...fixture('user-prompt-submit.json'), session_id: LATER_SESSION, prompt_id: 'later-prompt' })
      assert.ok('hookSpecificOutput' in answer, JSON.stringify(answer))
    }

    test('/v1/access names the key, its scopes and whether it may delete; no key is a 401 in the contract shape', async () => {
      assert.deepEqual((await as(SECRETS.reader, { method: 'GET', url: '/v1/access' })).json(), { keys_required: true, key: 'reader', scopes: ['team-a/*'], can_delete: false })
      assert.deepEqual((await as(SECRETS.admin, { method: 'GET', url: '/v1/access' })).json(), { keys_required: true, key: 'admin', scopes: ['*'], can_delete: true })
      const anonymous = await app.inject({ method: 'GET', url: '/v1/access' })
      assert.equal(anonymous.statusCode, 401)
      assert.deepEqual(Object.keys(anonymous.json()).sort(), ['code', 'error', 'message', 'statusCode'])
    })

    test('/v1/namespaces lists only what the key may read, with counts by role, saves and recalls of the last day', async () => {
      const batch = await as(SECRETS.admin, {
        method: 'POST', url: '/v1/memories/batch',
        payload: { items: [
          { namespace: NS, role: 'user', content: 'How do we paginate the ledger?' },
          { namespace: NS, role: 'assistant', content: 'Keyset pagination, pages of 5,000.' },
          { namespace: NS, role: 'assistant', content: 'Streamed the CSV.' },
          { namespace: 'team-b/web', role: 'note', content: 'The web team keeps its own memories.' }
        ] }
      })
      assert.equal(batch.statusCode, 201, batch.body)
      assert.equal((await as(SECRETS.reader, { method: 'POST', url: '/v1/recall', payload: { namespace: NS, query: 'ledger pagination' } })).statusCode, 200)

      const reader = await as(SECRETS.reader, { method: 'GET', url: '/v1/namespaces' })
      assert.equal(reader.statusCode, 200, reader.body)
      const items = reader.json().items as Array<Record<string, unknown>>
      assert.deepEqual(items.map((n) => n.namespace), [NS], 'the other team\'s namespace is not even named')
      const [billing] = items
      assert.equal(billing!.count, 3)
      assert.deepEqual(billing!.roles, { user: 1, assistant: 2, system: 0, tool: 0, note: 0 })
      assert.equal(billing!.saves_24h, 3)
      assert.equal(billing!.recalls_24h, 1)
      assert.ok(Date.parse(billing!.last_activity_at as string) >= Date.parse(billing!.last_memory_at as string))

      // Written to the store in rounds: after a flush the figures are the same, not counted twice.
      await app.namespaceActivity.flush()
      const again = (await as(SECRETS.admin, { method: 'GET', url: '/v1/namespaces' })).json().items as Array<Record<string, unknown>>
      assert.deepEqual(again.map((n) => [n.namespace, n.count, n.saves_24h, n.recalls_24h]), [[NS, 3, 3, 1], ['team-b/web', 1, 1, 0]])
      assert.equal((await app.inject({ method: 'GET', url: '/v1/namespaces' })).statusCode, 401)
    })

    test('an injection is traced with its memories, their scores and the rule; a SessionStart with its digest', async () => {
      await driveSession()
      await hook(SECRETS.admin, fixture('session-start.json'))
      const items = await injections(SECRETS.reader)
      assert.deepEqual(items.map((i) => [i.event, i.outcome]), [['SessionStart', 'injected'], ['UserPromptSubmit', 'injected']])
      const prompt = items[1]!
      assert.equal(prompt.session_id, LATER_SESSION)
      assert.equal(prompt.prompt, fixture('user-prompt-submit.json').prompt)
      assert.ok(prompt.prompt_memory_id, 'the prompt is linked to the memory it was saved as')
      const injected = prompt.hits.filter((h) => h.injected)
      assert.ok(injected.length >= 2, JSON.stringify(prompt.hits))
      for (const hit of injected) {
        assert.ok(['score_and_terms', 'strong_vector'].includes(hit.rule), hit.rule)
        assert.equal(typeof hit.score, 'number')
        assert.equal(typeof hit.scores?.text, 'number')
        assert.ok(hit.memory && hit.memory.content.length > 0, 'each hit carries its memory as stored')
      }
      assert.ok(injected.some((h) => h.memory!.content.includes('keyset pagination')))
      const digest = items[0]!
      assert.equal(digest.prompt, null)
      assert.ok(digest.hits.some((h) => h.rule === 'latest_summary' && h.injected && h.memory?.content.includes('Fixed invoice export timeouts')))

      // Filtered by session; a key outside the namespace is a 403 that says nothing more.
      assert.deepEqual((await injections(SECRETS.reader, `namespace=${encodeURIComponent(NS)}&session_id=${LATER_SESSION}`)).map((i) => i.event), ['SessionStart', 'UserPromptSubmit'])
      assert.deepEqual(await injections(SECRETS.reader, `namespace=${encodeURIComponent(NS)}&session_id=${EARLIER_SESSION}`), [])
      const outside = await as(SECRETS.other, { method: 'GET', url: `/v1/injections?namespace=${encodeURIComponent(NS)}` })
      assert.equal(outside.statusCode, 403)
      assert.equal(outside.json().code, 'SAGE_FORBIDDEN')
      const bad = await as(SECRETS.admin, { method: 'GET', url: `/v1/injections?namespace=${encodeURIComponent(NS)}&limit=0` })
      assert.equal(bad.statusCode, 400)
      assert.equal(bad.json().code, 'SAGE_VALIDATION')
    })

    test('a prompt with nothing relevant is traced with the reason, each memory left out with its rule', async () => {
      await driveSession()
      await hook(SECRETS.admin, { ...fixture('user-prompt-submit.json'), session_id: 'third', prompt_id: 'p3', prompt: 'Add dark mode to the settings page' })
      await hook(SECRETS.admin, { ...fixture('user-prompt-submit.json'), session_id: 'fourth', prompt_id: 'p4' }, '?namespace=team-a/empty')
      const [unrelated] = await injections(SECRETS.admin)
      const [nothing] = await injections(SECRETS.admin, 'namespace=team-a/empty')
      assert.equal(nothing!.outcome, 'nothing_recalled')
      assert.deepEqual(nothing!.hits, [])
      assert.equal(unrelated!.outcome, 'none_relevant')
      assert.ok(unrelated!.hits.length > 0 && unrelated!.hits.every((h) => !h.injected && ['below_threshold', 'too_few_terms'].includes(h.rule)), JSON.stringify(unrelated!.hits))
    })

    test('pages follow a cursor, and forgetting a session or the prompt forgets its traces', async () => {
      await driveSession()
      for (const n of [1, 2, 3]) await hook(SECRETS.admin, { ...fixture('user-prompt-submit.json'), session_id: `s${n}`, prompt_id: `p${n}`, prompt: `ledger pagination question ${n}` })
      await app.injections.flush()
      const first = (await as(SECRETS.admin, { method: 'GET', url: `/v1/injections?namespace=${encodeURIComponent(NS)}&limit=3` })).json()
      assert.equal(first.items.length, 3)
      const second = (await as(SECRETS.admin, { method: 'GET', url: `/v1/injections?namespace=${encodeURIComponent(NS)}&limit=3&cursor=${first.next_cursor}` })).json()
      assert.equal(second.items.length, 1)
      assert.equal(second.next_cursor, null)
      assert.equal((await as(SECRETS.admin, { method: 'GET', url: `/v1/injections?namespace=${encodeURIComponent(NS)}&cursor=bm9wZQ` })).statusCode, 400)

      const forget = await as(SECRETS.admin, { method: 'DELETE', url: `/v1/memories?namespace=${encodeURIComponent(NS)}&session_id=s1` })
      assert.equal(forget.statusCode, 200, forget.body)
      const left = await injections(SECRETS.admin)
      assert.deepEqual(left.map((i) => i.session_id).sort(), [LATER_SESSION, 's2', 's3'])
      const s2 = left.find((i) => i.session_id === 's2')!
      assert.equal((await as(SECRETS.admin, { method: 'DELETE', url: `/v1/memories/${s2.prompt_memory_id}` })).statusCode, 204)
      assert.deepEqual((await injections(SECRETS.admin)).map((i) => i.session_id).sort(), [LATER_SESSION, 's3'])
      // A memory that was injected, once forgotten, is named by id only.
      const later = (await injections(SECRETS.admin)).find((i) => i.session_id === LATER_SESSION)!
      const injectedId = later.hits.find((h) => h.injected)!.id
      assert.equal((await as(SECRETS.admin, { method: 'DELETE', url: `/v1/memories/${injectedId}` })).statusCode, 204)
      const after = (await injections(SECRETS.admin)).find((i) => i.session_id === LATER_SESSION)!
      assert.equal(after.hits.find((h) => h.id === injectedId)!.memory, null)
    })

    test('a dry run saves nothing, traces nothing, and answers what would be injected and why', async () => {
      await driveSession()
      await app.injections.flush()
      const before = await memoryCount(store.db)
      const tracesBefore = (await injections(SECRETS.reader)).length
      const answer = await hook(SECRETS.reader, { hook_event_name: 'UserPromptSubmit', prompt: 'what did we decide about paginating the ledger export?', cwd: scratch }, `?namespace=${encodeURIComponent(NS)}&dry_run=true`)
      const dryRun = answer.dry_run as { namespace: string; project_mode: string; would_save: boolean; injection: InjectionItem }
      assert.equal(dryRun.namespace, NS)
      assert.equal(dryRun.project_mode, 'on')
      assert.equal(dryRun.would_save, true)
      assert.equal(dryRun.injection.outcome, 'injected')
      assert.ok(dryRun.injection.hits.some((h) => h.injected && h.rule === 'score_and_terms'))
      assert.ok('hookSpecificOutput' in answer)
      assert.equal(await memoryCount(store.db), before, 'nothing saved')
      assert.equal((await injections(SECRETS.reader)).length, tracesBefore, 'nothing traced')
    })

    test('a project that opted out is answered {} and leaves nothing; a save-only one is saved and never injected', async () => {
      await driveSession()
      const off = join(scratch, 'off')
      const saveOnly = join(scratch, 'save-only')
      await mkdir(join(off, '.git'), { recursive: true })
      await mkdir(join(saveOnly, '.git'), { recursive: true })
      await writeFile(join(off, '.sage.json'), '{"mode": "off"}')
      await writeFile(join(saveOnly, '.sage.json'), '{"mode": "save-only"}')
      await app.injections.flush()
      const memories = await memoryCount(store.db)
      const traces = (await injections(SECRETS.admin)).length
      const question = { ...fixture('user-prompt-submit.json'), session_id: 'opted' }

      assert.deepEqual(await hook(SECRETS.admin, { ...question, prompt_id: 'off-1', cwd: join(off, 'src') }), {})
      assert.deepEqual(await hook(SECRETS.admin, { ...fixture('stop.json'), cwd: off }), {})
      assert.equal(await memoryCount(store.db), memories, 'nothing saved for the opted-out project')
      assert.equal((await injections(SECRETS.admin)).length, traces, 'nothing traced for it either')

      assert.deepEqual(await hook(SECRETS.admin, { ...question, prompt_id: 'save-only-1', cwd: saveOnly }), {})
      assert.deepEqual(await hook(SECRETS.admin, { ...fixture('session-start.json'), cwd: saveOnly }), {})
      assert.equal(await memoryCount(store.db), memories + 1, 'the prompt is saved')
      const traced = await injections(SECRETS.admin)
      assert.deepEqual(traced.slice(0, 2).map((i) => [i.event, i.outcome]), [['SessionStart', 'save_only'], ['UserPromptSubmit', 'save_only']])
    })

    test('the trace is kept within INJECTIONS_MAX_ROWS', async () => {
      const bounded = await buildTestApp(store.db, { INJECTIONS_MAX_ROWS: 3, HOOK_DEADLINE_MS: 5_000 })
      try {
        for (let n = 0; n < 6; n++) {
          const res = await bounded.inject({ method: 'POST', url: `/hooks/claude-code?namespace=bounded`, payload: { hook_event_name: 'UserPromptSubmit', session_id: `b${n}`, prompt: `question number ${n}` } })
          assert.equal(res.statusCode, 200)
          await bounded.injections.flush()
        }
        const left = (await bounded.inject({ method: 'GET', url: '/v1/injections?namespace=bounded' })).json().items as InjectionItem[]
        assert.deepEqual(left.map((i) => i.session_id), ['b5', 'b4', 'b3'])
      } finally {
        await bounded.close()
      }
    })

    test('both endpoints are in the OpenAPI document with their error shapes', async () => {
      const doc = (await app.inject({ method: 'GET', url: '/docs/json' })).json() as { paths: Record<string, Record<string, { responses: Record<string, unknown> }>> }
      for (const path of ['/v1/namespaces', '/v1/injections', '/v1/access']) {
        assert.ok(doc.paths[path]?.get, `${path} is documented`)
        assert.ok(doc.paths[path]!.get!.responses['401'] && doc.paths[path]!.get!.responses['403'], `${path} documents 401 and 403`)
      }
    })
  })
}
