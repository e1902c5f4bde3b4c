import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { after, before, describe, test } from 'node:test'
import Fastify, { type FastifyInstance } from 'fastify'
import { validationError } from '../../src/errors.js'
import { createClaudeCodeHook, hookIdempotencyKey, type HookAnswer } from '../../src/hooks/claude-code-hook.js'
import { readTranscriptFile } from '../../src/client/claude-transcript.js'
import { estimateTokens } from '../../src/memory/context-block.js'
import type { MemoryService } from '../../src/memory/memory-service.js'
import type { MemoryInput } from '../../src/memory/memory-schemas.js'
import { backends, buildTestApp, REPO_ROOT, type TestStore } from '../helper.js'

const FIXTURES = join(REPO_ROOT, 'test/fixtures/claude-code')
const fixture = (name: string) => JSON.parse(readFileSync(join(FIXTURES, name), 'utf8')) as Record<string, unknown>
const silentLog = Fastify({ logger: false }).log

const NAMESPACE = 'billing'
const CWD = '/home/dev/src/billing'
const EARLIER = 'earlier-session'
const LATER = 'later-session'

/** Memories of the same project on other topics: none may be injected for the prompts below. */
const UNRELATED = [
  'Set up CI caching for node_modules in GitHub Actions so the pipeline runs in under five minutes.',
  'Renamed the Customer model to AccountHolder across the codebase and updated the migrations.',
  'Upgrade Fastify to v5 and fix the deprecation warnings in the plugins.',
  'Added a Stripe webhook handler for refunds; it verifies the signature before touching the database.',
  'The login page flickers on Safari because of the CSS transition on the form.',
  'Use pnpm instead of npm for this repository; the lockfile is pnpm-lock.yaml.',
  "Timezone bug: dates in emails are rendered in UTC instead of the customer's timezone."
]

/**
 * The labelled set behind HOOK_MIN_SCORE: for each prompt, what must be injected and what must not. The prompts
 * run from the fixture's long one to two-to-five-word ones, where one shared word is not relevance.
 */
const LABELLED: Array<{ prompt: string; injected: string[]; notInjected: string[] }> = [
  {
    prompt: fixture('user-prompt-submit.json').prompt as string,
    injected: ['The invoice export times out for large accounts', 'keyset pagination on (account_id, posted_at, id)', 'Fixed invoice export timeouts'],
    notInjected: UNRELATED
  },
  { prompt: 'Why is the PDF renderer so slow for big invoices?', injected: ['the PDF renderer still loads all line items'], notInjected: UNRELATED },
  {
    prompt: 'How do we handle refunds from Stripe?',
    injected: ['Stripe webhook handler'],
    notInjected: [...UNRELATED.filter((u) => !u.includes('Stripe')), 'invoice export']
  },
  { prompt: 'fix the flaky test', injected: [], notInjected: [...UNRELATED, 'invoice'] },
  { prompt: 'Add dark mode to the settings page', injected: [], notInjected: [...UNRELATED, 'invoice'] },
  { prompt: 'PDF 渲染器为什么慢', injected: ['PDF 渲染器会一次加载所有明细行'], notInjected: UNRELATED }
]

function prompt(text: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { session_id: LATER, cwd: CWD, hook_event_name: 'UserPromptSubmit', prompt: text, ...extra }
}

function contextOf(answer: HookAnswer): string {
  return 'hookSpecificOutput' in answer ? answer.hookSpecificOutput.additionalContext : ''
}

for (const backend of backends()) {
  describe(`Claude Code hook on ${backend.name}`, () => {
    let store: TestStore
    let app: FastifyInstance

    const hook = async (body: unknown, query = ''): Promise<HookAnswer> => {
      const res = await app.inject({ method: 'POST', url: `/hooks/claude-code${query}`, payload: body as object })
      assert.equal(res.statusCode, 200, res.body)
      return res.json()
    }
    const seed = async (items: object[]) => {
      const res = await app.inject({ method: 'POST', url: '/v1/memories/batch', payload: { items } })
      assert.equal(res.statusCode, 201, res.body)
    }
    const all = async (namespace = NAMESPACE) =>
      (await app.inject({ method: 'GET', url: `/v1/memories?namespace=${namespace}&limit=500` })).json().items as Array<Record<string, unknown>>

    before(async () => {
      store = await backend.create()
      // The deadline is generous here: these tests are about what is answered; the route tests time it.
      app = await buildTestApp(store.db, { HOOK_DEADLINE_MS: 5_000 })
    })
    after(async () => {
      await app?.close()
      await store?.drop()
    })

    test('an earlier session is injected into a later prompt when relevant, and unrelated memories are not', async (t) => {
      await store.reset()
      const items: object[] = []
      for await (const memory of readTranscriptFile(join(FIXTURES, 'transcript.jsonl'))) items.push({ ...memory, namespace: NAMESPACE, session_id: EARLIER })
      UNRELATED.forEach((content, i) => items.push({ namespace: NAMESPACE, session_id: `other-${i}`, role: i % 2 ? 'assistant' : 'user', content }))
      items.push({ namespace: NAMESPACE, session_id: EARLIER, role: 'note', tags: ['summary'], content: fixture('post-compact.json').compact_summary })
      // Another project's identical memory never crosses over.
      items.push({ namespace: 'web', session_id: 'w1', role: 'user', content: 'The invoice export times out for large accounts in the web app too.' })
      await seed(items)

      for (const { prompt: text, injected, notInjected } of LABELLED) {
        const context = contextOf(await hook(prompt(text)))
        t.diagnostic(`${JSON.stringify(text.slice(0, 40))}: ${context === '' ? '{}' : `${context.split('\n').length - 1} memories`}`)
        for (const expected of injected) assert.ok(context.includes(expected), `"${text}" should bring "${expected}"; got:\n${context}`)
        for (const unexpected of notInjected) assert.ok(!context.includes(unexpected), `"${text}" should not bring "${unexpected}"; got:\n${context}`)
        assert.ok(!context.includes('web app too'))
        if (injected.length > 0) {
          assert.match(context, /^Sage recalled these from earlier sessions of "billing"/)
          assert.match(context, /\n- \[\d{4}-\d{2}-\d{2} (user|assistant|note|tool)/, 'each fact carries its date and role')
        } else {
          assert.equal(context, '')
        }
      }
    })

    test('the prompt just saved is never echoed back, with or without a session id', async () => {
      await store.reset()
      await seed([{ namespace: NAMESPACE, session_id: EARLIER, role: 'assistant', content: 'The reconciliation job runs nightly at 02:00 and retries failed ledger batches three times.' }])
      const variants = [
        prompt('When does the reconciliation job run, and does it retry ledger batches?', { prompt_id: 'p-1' }),
        { cwd: CWD, hook_event_name: 'UserPromptSubmit', prompt: 'Does the reconciliation job retry failed ledger batches nightly?' },
        { cwd: CWD, hook_event_name: 'UserPromptSubmit', prompt: 'Does the reconciliation job retry failed ledger batches nightly?' }
      ]
      for (const body of variants) {
        const context = contextOf(await hook(body))
        assert.match(context, /runs nightly at 02:00/)
        assert.ok(!context.includes(body.prompt as string), `echoed the prompt:\n${context}`)
      }
      const prompts = (await all()).filter((m) => m.role === 'user')
      // The session-less prompt sent twice is one memory (same event, same text).
      assert.equal(prompts.length, 2)
      assert.equal(prompts.find((m) => m.session_id === LATER)?.source_id, 'p-1')
    })

    test('what the current session already holds is not injected', async () => {
      await store.reset()
      await seed([{ namespace: NAMESPACE, session_id: LATER, role: 'assistant', content: 'The refund webhook verifies the Stripe signature with the endpoint secret.' }])
      assert.deepEqual(await hook(prompt('How does the Stripe refund webhook verify the signature?')), {})
      const context = contextOf(await hook(prompt('How does the Stripe refund webhook verify the signature?', { session_id: 'another' })))
      assert.match(context, /verifies the Stripe signature/)
    })

    test('a compaction summary outranks a turn that matches as well', async () => {
      await store.reset()
      // Not near-copies, which would count once (the newest).
      await seed([
        { namespace: NAMESPACE, session_id: 'a', role: 'assistant', content: 'Decided to move the ledger export to keyset pagination with pages of 5,000 rows.', created_at: '2026-11-20T10:00:00Z' },
        { namespace: NAMESPACE, session_id: 'b', role: 'note', tags: ['summary'], content: 'Summary: we decided the ledger export moves to keyset pagination; the PDF renderer and the refund webhook come next.', created_at: '2026-11-19T10:00:00Z' }
      ])
      const lines = contextOf(await hook(prompt('What did we decide about ledger export pagination?'))).split('\n')
      assert.equal(lines.length, 3, lines.join('\n'))
      assert.match(lines[1]!, /^- \[2026-11-19 note #summary\]/)
      assert.match(lines[2]!, /^- \[2026-11-20 assistant\]/)
    })

    test('the context keeps within HOOK_TOKEN_BUDGET', async () => {
      await store.reset()
      const small = await buildTestApp(store.db, { HOOK_TOKEN_BUDGET: 120, HOOK_DEADLINE_MS: 5_000 })
      try {
        // Each with details of its own: near-copies would count as one memory.
        await seed(Array.from({ length: 12 }, (_, i) => ({
          namespace: NAMESPACE, session_id: `s${i}`, role: 'assistant',
          content: `Ledger export pagination note ${i}: keyset pagination keeps the export fast. ${Array.from({ length: 30 }, (_, j) => `Detail d${i}x${j}.`).join(' ')}`
        })))
        const res = await small.inject({ method: 'POST', url: '/hooks/claude-code', payload: prompt('ledger export pagination keyset') })
        const context = contextOf(res.json())
        assert.ok(context !== '')
        assert.ok(estimateTokens(context) <= 120, `${estimateTokens(context)} tokens`)
      } finally {
        await small.close()
      }
    })

    test('Stop, SubagentStop and PostCompact save what they carry; a repeat is one memory', async () => {
      await store.reset()
      const stop = fixture('stop.json')
      assert.deepEqual(await hook(stop), {})
      assert.deepEqual(await hook(stop), {})
      assert.deepEqual(await hook({ ...stop, hook_event_name: 'SubagentStop', agent_type: 'Explore', last_assistant_message: 'Found 3 callers of exportLedger.' }), {})
      assert.deepEqual(await hook(fixture('post-compact.json')), {})
      const saved = await all()
      assert.deepEqual(
        saved.map((m) => [m.role, m.tags, (m.metadata as Record<string, unknown>).hook_event, m.session_id]).sort(),
        [
          ['assistant', [], 'Stop', stop.session_id],
          ['assistant', [], 'SubagentStop', stop.session_id],
          ['note', ['summary'], 'PostCompact', stop.session_id]
        ].sort()
      )
      const subagent = saved.find((m) => (m.metadata as Record<string, unknown>).hook_event === 'SubagentStop')!
      assert.deepEqual(subagent.metadata, { cwd: CWD, tool: 'claude-code', hook_event: 'SubagentStop', transcript: stop.transcript_path, agent_type: 'Explore' })
      const summary = saved.find((m) => m.role === 'note')!
      assert.equal((summary.metadata as Record<string, unknown>).trigger, 'auto')
    })

    test('SessionStart answers a digest of earlier sessions: latest summary first, the current session left out', async () => {
      await store.reset()
      const start = fixture('session-start.json')
      assert.deepEqual(await hook(start), {}, 'nothing earlier: nothing to say')
      await seed([
        { namespace: NAMESPACE, session_id: 's1', role: 'user', content: 'Why does the invoice export time out?', created_at: '2026-11-18T09:00:00Z' },
        { namespace: NAMESPACE, session_id: 's1', role: 'assistant', content: 'It loads the whole ledger; switching to keyset pagination.', created_at: '2026-11-18T09:01:00Z' },
        { namespace: NAMESPACE, session_id: 's1', role: 'note', tags: ['summary'], content: 'Export fixed with keyset pagination; PDF renderer still slow.', created_at: '2026-11-18T09:30:00Z' },
        { namespace: NAMESPACE, session_id: 's2', role: 'user', content: 'Add a refund webhook for Stripe.', created_at: '2026-11-19T09:00:00Z' },
        { namespace: NAMESPACE, session_id: start.session_id, role: 'user', content: 'This very session.', created_at: '2026-11-21T09:00:00Z' }
      ])
      const answer = await hook(start)
      assert.ok('hookSpecificOutput' in answer)
      assert.equal(answer.hookSpecificOutput.hookEventName, 'SessionStart')
      const digest = answer.hookSpecificOutput.additionalContext
      assert.match(digest, /^Sage: recent work in "billing"/)
      assert.match(digest, /Latest summary \(2026-11-18\): Export fixed with keyset pagination; PDF renderer still slow\./)
      assert.match(digest, /- 2026-11-19, 1 memory; last asked: "Add a refund webhook for Stripe\."/)
      assert.match(digest, /- 2026-11-18, 3 memories; last asked: "Why does the invoice export time out\?"; last answer: "It loads the whole ledger/)
      assert.ok(digest.indexOf('2026-11-19,') < digest.indexOf('2026-11-18,'), 'newest first')
      assert.ok(!digest.includes('This very session'))
    })

    test('Codex CLI payloads (same fields, turn_id instead of prompt_id, null transcript_path) are saved and answered alike', async () => {
      await store.reset()
      await seed([{ namespace: NAMESPACE, session_id: EARLIER, role: 'assistant', content: 'The ledger export uses keyset pagination in pages of 5,000 rows.' }])
      // Fields as Codex's own input schemas (codex-rs/hooks/schema/generated) list them.
      const codex = { session_id: 'codex-1', turn_id: '019d036d-c7fa-72d2-b6fd-78878bfe34e4', transcript_path: null, cwd: CWD, model: 'gpt-5-codex', permission_mode: 'default' }
      const answer = await hook({ ...codex, hook_event_name: 'UserPromptSubmit', prompt: 'How is the ledger export paginated?' })
      assert.ok('hookSpecificOutput' in answer)
      assert.equal(answer.hookSpecificOutput.hookEventName, 'UserPromptSubmit')
      assert.match(answer.hookSpecificOutput.additionalContext, /keyset pagination in pages of 5,000 rows/)
      await hook({ ...codex, hook_event_name: 'Stop', stop_hook_active: false, last_assistant_message: 'Pages of 5,000 rows, keyset on (account_id, id).' })
      await hook({ ...codex, hook_event_name: 'Stop', stop_hook_active: false, last_assistant_message: null })
      const saved = (await all()).filter((m) => m.session_id === 'codex-1')
      assert.deepEqual(saved.map((m) => [m.role, m.source_id]).sort(), [['assistant', null], ['user', codex.turn_id]])
      assert.deepEqual(saved.find((m) => m.role === 'user')!.metadata, { cwd: CWD, tool: 'claude-code', hook_event: 'UserPromptSubmit' })
    })

    test('?namespace= overrides the namespace from cwd; a bad one saves nothing', async () => {
      await store.reset()
      await hook(fixture('stop.json'), '?namespace=team-billing')
      assert.equal((await all('team-billing')).length, 1)
      assert.equal((await all()).length, 0)
      assert.deepEqual(await hook(fixture('stop.json'), '?namespace=has%20space'), {})
      assert.equal((await all('team-billing')).length + (await all()).length, 1)
    })

    test('PreCompact, SessionEnd, unknown events and bodies without the field they need answer {} and save nothing', async () => {
      await store.reset()
      for (const body of [
        fixture('pre-compact.json'),
        fixture('session-end.json'),
        { hook_event_name: 'Notification', message: 'hi', cwd: CWD },
        { hook_event_name: 'UserPromptSubmit', cwd: CWD },
        { hook_event_name: 'UserPromptSubmit', cwd: CWD, prompt: '   ' },
        { hook_event_name: 'Stop', cwd: CWD, last_assistant_message: 42 },
        { prompt: 'no event name' },
        { hook_event_name: 'UserPromptSubmit', cwd: CWD, prompt: 'x', session_id: 's'.repeat(300) }
      ]) {
        assert.deepEqual(await hook(body), {}, JSON.stringify(body).slice(0, 80))
      }
      // The over-long session id is treated as absent, not refused: the prompt itself is kept.
      assert.deepEqual((await all()).map((m) => [m.content, m.session_id]), [['x', null]])
    })
  })
}

/** A memory service whose calls the test controls, to time the deadline and the retry buffer without a database. */
function fakeMemories(overrides: Partial<Pick<MemoryService, 'save' | 'recall' | 'list' | 'sessions'>>) {
  const never = () => new Promise<never>(() => undefined)
  return {
    save: overrides.save ?? never,
    recall: overrides.recall ?? never,
    list: overrides.list ?? never,
    sessions: overrides.sessions ?? never
  } as Pick<MemoryService, 'save' | 'recall' | 'list' | 'sessions'>
}

const connectionRefused = () => Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), { code: 'ECONNREFUSED' })

describe('Claude Code hook deadline and retries', () => {
  test('answers {} within the deadline when the store hangs, for every event', async () => {
    const hook = createClaudeCodeHook({ memories: fakeMemories({}), namespaceOf: async () => 'ns', log: silentLog, deadlineMs: 100, tokenBudget: 1500 })
    for (const name of ['user-prompt-submit.json', 'session-start.json', 'stop.json', 'post-compact.json']) {
      // Read before the clock starts: only the hook's own time is under test.
      const payload = fixture(name)
      const started = performance.now()
      // A timer of our own, due when the answer is (10 ms before the deadline): when a busy machine stalls the
      // event loop, both fire late together, so the answer is judged against it, not against the wall clock.
      const due = new Promise<number>((resolve) => setTimeout(() => resolve(performance.now()), 90))
      assert.deepEqual(await hook.handle(payload), {})
      const answeredAt = performance.now()
      const took = answeredAt - started
      const lateBy = answeredAt - (await due)
      assert.ok(took >= 85 && lateBy < 15, `${name}: answered after ${took.toFixed(1)} ms, ${lateBy.toFixed(1)} ms after a 90 ms timer`)
    }
    await hook.close(10)
  })

  test('time already spent on the request comes off the deadline', async () => {
    const hook = createClaudeCodeHook({ memories: fakeMemories({}), namespaceOf: async () => 'ns', log: silentLog, deadlineMs: 200, tokenBudget: 1500 })
    const started = performance.now()
    await hook.handle(fixture('stop.json'), { elapsedMs: 150 })
    assert.ok(performance.now() - started < 60)
    await hook.close(10)
  })

  test('a save the store refuses for now is retried until it lands, once', async () => {
    let up = false
    const saved: Array<{ content: string; key?: string; created_at?: string }> = []
    const hook = createClaudeCodeHook({
      memories: fakeMemories({
        save: async (request, options) => {
          if (!up) throw connectionRefused()
          const input = (request as { memory: MemoryInput }).memory
          saved.push({ content: input.content, key: options.idempotencyKey ?? undefined, created_at: input.created_at })
          return { queued: false, results: [{ id: '00000000-0000-4000-8000-000000000000', created: true }] }
        },
        recall: async () => {
          throw connectionRefused()
        }
      }),
      namespaceOf: async () => 'ns',
      log: silentLog,
      deadlineMs: 200,
      tokenBudget: 1500,
      retry: { initialDelayMs: 20, maxDelayMs: 40 }
    })
    const sentAt = Date.now()
    assert.deepEqual(await hook.handle(fixture('user-prompt-submit.json')), {})
    assert.deepEqual(await hook.handle(fixture('stop.json')), {})
    assert.equal(hook.retryBuffer.size(), 2)
    await new Promise((resolve) => setTimeout(resolve, 100))
    assert.equal(saved.length, 0)
    up = true
    const deadline = Date.now() + 5_000
    while (hook.retryBuffer.size() > 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10))
    assert.deepEqual(saved.map((s) => s.content), [fixture('user-prompt-submit.json').prompt, fixture('stop.json').last_assistant_message])
    // The time the hook fired is kept, not the time the retry landed; the key makes a retried save one memory.
    for (const s of saved) {
      assert.ok(Math.abs(Date.parse(s.created_at!) - sentAt) < 1_000)
      assert.match(s.key!, /^claude-code:[0-9a-f]{40}$/)
    }
    await hook.close(10)
  })

  test('a save refused for its content is not retried', async () => {
    let calls = 0
    const hook = createClaudeCodeHook({
      memories: fakeMemories({
        save: async () => {
          calls++
          throw validationError('content must be a non-empty string')
        }
      }),
      namespaceOf: async () => 'ns',
      log: silentLog,
      deadlineMs: 100,
      tokenBudget: 1500
    })
    assert.deepEqual(await hook.handle(fixture('stop.json')), {})
    assert.equal(calls, 1)
    assert.equal(hook.retryBuffer.size(), 0)
    await hook.close(10)
  })

  test('the idempotency key is the same for the same event and text, different otherwise', () => {
    const base = { namespace: 'ns', session_id: 's', role: 'assistant' as const, content: 'done', metadata: { hook_event: 'Stop' } }
    assert.equal(hookIdempotencyKey(base), hookIdempotencyKey({ ...base, created_at: '2020-01-01T00:00:00Z' }))
    assert.notEqual(hookIdempotencyKey(base), hookIdempotencyKey({ ...base, session_id: 't' }))
    assert.notEqual(hookIdempotencyKey(base), hookIdempotencyKey({ ...base, content: 'done!' }))
    assert.notEqual(hookIdempotencyKey(base), hookIdempotencyKey({ ...base, metadata: { hook_event: 'SubagentStop' } }))
  })
})
