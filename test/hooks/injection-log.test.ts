import assert from 'node:assert/strict'
import { test } from 'node:test'
import Fastify from 'fastify'
import { createInjectionLog } from '../../src/hooks/injection-log.js'
import { createInjectionStore, type Injection, type InjectionStore } from '../../src/hooks/injection-store.js'
import { backends } from '../helper.js'

const log = Fastify({ logger: false }).log
const trace = (prompt: string): Injection => ({
  created_at: new Date().toISOString(), namespace: 'ns', session_id: 's', event: 'UserPromptSubmit', prompt,
  outcome: 'nothing_recalled', hits: [], prompt_memory_id: null, took_ms: 1
})
const connectionRefused = () => Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), { code: 'ECONNREFUSED' })

/** A store whose inserts fail as the test says. */
function fakeStore(fail: (round: readonly Injection[]) => Error | undefined) {
  const written: string[] = []
  const store = {
    async insertMany(round: readonly Injection[]) {
      const error = fail(round)
      if (error) throw error
      written.push(...round.map((i) => i.prompt ?? ''))
    },
    prune: async () => 0
  } as unknown as InjectionStore
  return { store, written }
}

test('traces wait out a database that is down and are written when it is back, in order', async () => {
  let down = true
  const { store, written } = fakeStore(() => (down ? connectionRefused() : undefined))
  const injections = createInjectionLog({ store, log, maxRows: 100, maxAgeMs: 86_400_000, retryDelayMs: 20 })
  injections.record(trace('first'))
  injections.record(trace('second'))
  await injections.flush()
  assert.deepEqual(written, [])
  down = false
  await new Promise((resolve) => setTimeout(resolve, 60))
  await injections.flush()
  assert.deepEqual(written, ['first', 'second'])
  await injections.close()
})

test('a round the store refuses for its content is dropped, and the next ones still go in', async () => {
  const { store, written } = fakeStore((round) => (round.some((i) => i.prompt === 'poison') ? new Error('invalid input syntax') : undefined))
  const injections = createInjectionLog({ store, log, maxRows: 100, maxAgeMs: 86_400_000, retryDelayMs: 20 })
  injections.record(trace('poison'))
  await injections.flush()
  injections.record(trace('after'))
  await injections.flush()
  assert.deepEqual(written, ['after'])
  await injections.close()
})

for (const backend of backends()) {
  test(`a prompt with NUL and a lone surrogate is stored normalised on ${backend.name}`, async (t) => {
    const testStore = await backend.create()
    t.after(() => testStore.drop())
    const store = createInjectionStore(testStore.db)
    const injections = createInjectionLog({ store, log, maxRows: 100, maxAgeMs: 86_400_000 })
    injections.record(trace('a\u0000b \ud800 c'))
    await injections.flush()
    const { items } = await store.list({ namespace: 'ns', limit: 10 })
    assert.deepEqual(items.map((i) => i.prompt), ['ab \ufffd c'])
    await injections.close()
  })
}
