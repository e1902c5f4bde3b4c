import assert from 'node:assert/strict'
import { after, describe, test } from 'node:test'
import pg from 'pg'
import { queueKeys } from '../src/queue/queue-keys.js'
import { createPostgresDatabase, testRedisUrl } from './helper.js'
import { counterValue } from './support/queued-saves.js'
import { dropKeys, testKeyPrefix, testRedisClient } from './support/redis.js'
import { startSage, type SageProcess } from './support/sage-process.js'
import { waitFor } from './support/wait-for.js'

const redisUrl = testRedisUrl()
const postgresUrl = process.env.TEST_DATABASE_URL
const skip = !redisUrl ? 'TEST_REDIS_URL is not set' : !postgresUrl ? 'TEST_DATABASE_URL is not set' : false

type Operation = 'save' | 'async-save' | 'async-batch' | 'recall' | 'hook'
interface Outcome {
  replica: number
  operation: Operation
  /** HTTP status, or the network error's code when the replica was gone. */
  status: number | string
  /** Memory ids the answer acknowledged. */
  ids: string[]
  /** The hook's prompt id (its memory's source id). */
  promptId?: string
  afterKill: boolean
}

const OPERATIONS: Operation[] = ['save', 'async-save', 'async-batch', 'recall', 'hook']
const NAMESPACE = 'drill'

/** One request of `operation` with the tag `n`; every memory's content is unique, so a duplicate would show. */
async function send(url: string, operation: Operation, n: number): Promise<Pick<Outcome, 'status' | 'ids' | 'promptId'>> {
  const post = (path: string, body: unknown, headers: Record<string, string> = {}) =>
    fetch(`${url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body), signal: AbortSignal.timeout(30_000) })
  const async = { prefer: 'respond-async' }
  let res: Response
  let promptId: string | undefined
  switch (operation) {
    case 'save':
      res = await post('/v1/memories', { namespace: NAMESPACE, content: `drill save ${n} of the ledger export`, source_id: `save-${n}` })
      break
    case 'async-save':
      res = await post('/v1/memories', { namespace: NAMESPACE, content: `drill queued save ${n} of the ledger export` }, async)
      break
    case 'async-batch':
      res = await post('/v1/memories/batch', { items: Array.from({ length: 10 }, (_, i) => ({ namespace: NAMESPACE, content: `drill queued batch ${n} item ${i}` })) }, async)
      break
    case 'recall':
      res = await post('/v1/recall', { namespace: NAMESPACE, query: 'ledger export drill', k: 5 })
      break
    case 'hook':
      promptId = `prompt-${n}`
      res = await post('/hooks/claude-code', {
        hook_event_name: 'UserPromptSubmit', session_id: `session-${n % 5}`, cwd: `/work/${NAMESPACE}`, prompt_id: promptId,
        prompt: `drill hook prompt ${n}: how do we paginate the ledger export?`
      })
      break
  }
  const body = (await res.json()) as { id?: string; items?: Array<{ id: string }>; results?: unknown[] }
  const ids = operation === 'recall' || operation === 'hook' ? [] : body.id ? [body.id] : (body.items ?? []).map((item) => item.id)
  return { status: res.status, ids, promptId }
}

describe('three replicas on one Postgres and one Redis, one killed mid-load', { skip }, () => {
  const prefix = testKeyPrefix('scale-out')
  const keys = queueKeys(prefix)
  let database: Awaited<ReturnType<typeof createPostgresDatabase>> | undefined
  let replicas: SageProcess[] = []
  after(async () => {
    for (const sage of replicas) await sage.stop('SIGKILL')
    await database?.drop()
    await dropKeys(redisUrl!, prefix)
  })

  test('nothing acknowledged is lost or doubled, the others keep answering, the dead one\'s pending entries are claimed', async () => {
    database = await createPostgresDatabase(postgresUrl!)
    const env = (indexer: boolean) => ({
      DATABASE_URL: database!.url,
      REDIS_URL: redisUrl!,
      REDIS_KEY_PREFIX: prefix,
      QUEUE_BATCH_SIZE: '50',
      QUEUE_CLAIM_IDLE_MS: '1000',
      RATE_LIMIT_MAX: '0',
      HOOK_DEADLINE_MS: '3000',
      VECTOR_INDEXER: String(indexer)
    })
    // Started together: the migrations' advisory lock lets one apply them while the others wait.
    replicas = await Promise.all([startSage(env(true), 60_000), startSage(env(false), 60_000), startSage(env(false), 60_000)])
    const victim = 2
    const alive = new Set([0, 1, 2])
    const outcomes: Outcome[] = []
    const redis = testRedisClient(redisUrl!)
    const locker = new pg.Client({ connectionString: database.url })
    await locker.connect()

    let killed = false
    let stopping = false
    let n = 0
    const worker = async (w: number) => {
      // Bounded: at most 1,500 requests in all, and the phases below end it sooner.
      while (!stopping && n < 1_500) {
        const i = n++
        const candidates = [...alive]
        const replica = candidates[(i + w) % candidates.length]!
        const operation = OPERATIONS[i % OPERATIONS.length]!
        const afterKill = killed
        try {
          outcomes.push({ replica, operation, afterKill, ...(await send(replicas[replica]!.url, operation, i)) })
        } catch (error) {
          const code = (error as { cause?: { code?: string } }).cause?.code ?? (error as Error).name
          outcomes.push({ replica, operation, afterKill, status: code, ids: [] })
        }
      }
    }
    try {
      const load = Promise.all(Array.from({ length: 8 }, (_, w) => worker(w)))
      await new Promise((resolve) => setTimeout(resolve, 3_000))

      // Hold the consumers' writes back, so the victim is killed while it holds entries it has read and not written.
      await locker.query('BEGIN')
      await locker.query('LOCK TABLE memories IN EXCLUSIVE MODE')
      const victimPid = `:${replicas[victim]!.child.pid}:`
      // Entries idle for 300 ms are stuck behind the lock: a write that got in before it would have been acknowledged.
      const held = await waitFor<{ consumer: string; pending: number } | undefined>('the victim to hold pending entries', async () => {
        const summary = (await redis.xpending(keys.stream, keys.group)) as [number, string, string, Array<[string, string]> | null]
        const consumer = (summary[3] ?? []).find(([name]) => name.includes(victimPid))?.[0]
        if (!consumer) return undefined
        const stuck = (await redis.xpending(keys.stream, keys.group, 'IDLE', 300, '-', '+', 1000, consumer)) as unknown[]
        return stuck.length > 0 ? { consumer, pending: stuck.length } : undefined
      }, 20_000, 20) as { consumer: string; pending: number }
      alive.delete(victim)
      killed = true
      assert.notEqual(await replicas[victim]!.stop('SIGKILL'), 0)
      await locker.query('COMMIT')

      await new Promise((resolve) => setTimeout(resolve, 4_000))
      stopping = true
      await load
      await waitFor('the queue to drain', async () => (await redis.xlen(keys.stream)) === 0, 60_000, 100)

      const counts = (operation: Operation, afterKill: boolean) => outcomes.filter((o) => o.operation === operation && o.afterKill === afterKill).length
      for (const operation of OPERATIONS) assert.ok(counts(operation, false) > 0 && counts(operation, true) > 0, `${operation} ran before and after the kill`)

      // The survivors answered every request, before the kill and after it.
      const survivors = outcomes.filter((o) => o.replica !== victim)
      const failed = survivors.filter((o) => typeof o.status !== 'number' || o.status >= 300)
      assert.deepEqual(failed, [], 'a survivor failed a request')
      // The victim answered until it was killed; what it had in hand then was not acknowledged.
      assert.ok(outcomes.some((o) => o.replica === victim && o.status === 202))

      const { rows } = await locker.query<{ id: string; source_id: string | null; content: string }>('SELECT id, source_id, content FROM memories WHERE namespace = $1', [NAMESPACE])
      const stored = new Set(rows.map((row) => row.id))
      assert.equal(new Set(rows.map((row) => row.content)).size, rows.length, 'a memory was stored twice')
      const acknowledged = outcomes.filter((o) => typeof o.status === 'number' && o.status < 300).flatMap((o) => o.ids)
      assert.ok(acknowledged.length > 200)
      const lost = acknowledged.filter((id) => !stored.has(id))
      assert.deepEqual(lost, [], `${lost.length} acknowledged saves are missing`)
      // A hook answered by a survivor keeps its prompt (its save went to the queue before the answer).
      const prompts = new Set(rows.map((row) => row.source_id))
      const missingPrompts = survivors.filter((o) => o.operation === 'hook' && !prompts.has(o.promptId!))
      assert.deepEqual(missingPrompts, [], 'a prompt a survivor took is missing')

      // The entries the victim held were claimed and written by the others; its consumer then left the group.
      assert.equal(Number(((await redis.xpending(keys.stream, keys.group)) as [number])[0]), 0)
      const metrics = await Promise.all([0, 1].map(async (i) => (await fetch(`${replicas[i]!.url}/metrics`)).text()))
      const retried = metrics.reduce((sum, text) => sum + counterValue(text, 'sage_queue_entries_total{event="retried"}'), 0)
      assert.ok(retried >= held.pending, `${retried} retried, ${held.pending} held by the victim`)
      await waitFor('the dead consumer to leave the group', async () => {
        const consumers = (await redis.xinfo('CONSUMERS', keys.stream, keys.group)) as Array<Array<string | number>>
        return !consumers.some((fields) => String(fields[1]) === held.consumer)
      }, 10_000, 200)

      for (const i of [0, 1]) assert.equal(await replicas[i]!.stop('SIGTERM'), 0, replicas[i]!.output())
    } finally {
      stopping = true
      await locker.end().catch(() => undefined)
      redis.disconnect()
    }
  })
})
