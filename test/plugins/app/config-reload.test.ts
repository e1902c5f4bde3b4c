import assert from 'node:assert/strict'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Writable } from 'node:stream'
import { after, before, describe, test } from 'node:test'
import type { FastifyInstance } from 'fastify'
import { buildApp, loggerOptions } from '../../../src/app.js'
import { loadConfig } from '../../../src/config.js'
import { estimateTokens } from '../../../src/memory/context-block.js'
import { backends, type TestStore } from '../../helper.js'
import { processStore } from '../../support/process-store.js'
import { startSage } from '../../support/sage-process.js'
import { waitFor } from '../../support/wait-for.js'

const SECRET = 'reload-secret-0123456789abcdef'
// A long hook deadline: on a busy machine the default 250 ms can pass before the context is made.
const BASE = 'LOG_LEVEL=info\nSAGE_DATA_DIR=:memory:\nRECALL_EXACT_MAX_MEMORIES=0\nHOOK_DEADLINE_MS=10000\n'

// Distinct words per memory, so the recall does not collapse them as near-copies of one fact.
const DETAILS = 'cursor offset index shard replica vacuum analyze checkpoint wal segment buffer sequence trigger partition tablespace'.split(' ').flatMap((w) => [w, `${w}s`, `re${w}`])

const prompt = (text: string) => ({
  hook_event_name: 'UserPromptSubmit',
  session_id: 'now',
  cwd: '/src/reload',
  prompt_id: `p-${Math.random()}`,
  prompt: text
})

describe('SIGHUP reloads the environment file: live settings change, the rest waits for a restart', () => {
  let dir: string
  let file: string
  let store: TestStore
  let app: FastifyInstance
  const logs: string[] = []
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sage-reload-'))
    file = join(dir, 'sage.env')
    await writeFile(file, `${BASE}RATE_LIMIT_MAX=5\n`)
    store = await backends()[0]!.create()
    const read = () => loadConfig({ SAGE_ENV_FILE: file })
    const config = read()
    const stream = new Writable({ write: (chunk, _enc, done) => { logs.push(chunk.toString()); done() } })
    app = await buildApp(config, { database: store.db, backfill: false, readConfig: read, logger: { ...(loggerOptions(config) as object), stream } })
    await app.ready()
  })
  after(async () => {
    await app?.close()
    await store?.drop()
    await rm(dir, { recursive: true, force: true })
  })

  const list = (headers: Record<string, string> = {}) => app.inject({ method: 'GET', url: '/v1/memories?namespace=reload', headers })
  const contextTokens = async () => {
    const res = await app.inject({ method: 'POST', url: '/hooks/claude-code', payload: prompt('ledger export pagination keyset'), headers: { authorization: `Bearer ${SECRET}` } })
    const context = (res.json() as { hookSpecificOutput?: { additionalContext: string } }).hookSpecificOutput?.additionalContext ?? ''
    return estimateTokens(context)
  }

  test('rate limit, log level, hook budget and keys change in place; PORT is logged as needing a restart', async () => {
    assert.equal((await list()).headers['x-ratelimit-limit'], '5')
    await writeFile(file, `${BASE}RATE_LIMIT_MAX=1000\n`)
    assert.deepEqual(await app.reloadConfig(), { ok: true, applied: ['RATE_LIMIT_MAX'], restartNeeded: [] })
    for (let i = 0; i < 12; i++) {
      await app.inject({
        method: 'POST', url: '/v1/memories',
        payload: { namespace: 'reload', session_id: `old-${i}`, role: 'assistant', content: `Ledger export pagination note ${i}: keyset pagination keeps it fast. ${DETAILS.map((word) => `${word}-${i}`).join(' ')}` }
      })
    }
    const wide = await contextTokens()
    assert.ok(wide > 200, `${wide} tokens with the default budget`)

    await writeFile(file, `${BASE}LOG_LEVEL=debug\nRATE_LIMIT_MAX=7\nHOOK_TOKEN_BUDGET=120\nPORT=9999\nSAGE_API_KEYS=ops:${SECRET}=*\n`)
    const reload = await app.reloadConfig()
    assert.equal(reload.ok, true)
    assert.deepEqual(reload.applied.sort(), ['HOOK_TOKEN_BUDGET', 'LOG_LEVEL', 'RATE_LIMIT_MAX', 'SAGE_API_KEYS'])
    assert.deepEqual(reload.restartNeeded, ['PORT'])
    assert.equal(app.config.PORT, 8765, 'a restart-only variable keeps its value')
    assert.equal(app.log.level, 'debug')

    assert.equal((await list()).statusCode, 401, 'keys added by the reload are required at once')
    const res = await list({ authorization: `Bearer ${SECRET}` })
    assert.equal(res.statusCode, 200)
    assert.equal(res.headers['x-ratelimit-limit'], '7')
    const narrow = await contextTokens()
    assert.ok(narrow > 0 && narrow <= 120, `${narrow} tokens within the new budget of 120`)

    const text = logs.join('')
    assert.match(text, /"msg":"configuration reloaded"/)
    assert.match(text, /"variables":\["PORT"\],"msg":"changed variables that take effect at the next start"/)
    assert.ok(!text.includes(SECRET), 'a secret reached the logs')
  })

  test('RATE_LIMIT_MAX=0 turns the limiter off', async () => {
    await writeFile(file, `${BASE}RATE_LIMIT_MAX=0\nSAGE_API_KEYS=ops:${SECRET}=*\n`)
    assert.equal((await app.reloadConfig()).ok, true)
    for (let i = 0; i < 20; i++) {
      const res = await list({ authorization: `Bearer ${SECRET}` })
      assert.equal(res.statusCode, 200)
      assert.equal(res.headers['x-ratelimit-limit'], undefined)
    }
  })

  test('an invalid file changes nothing and says why', async () => {
    await writeFile(file, `${BASE}RATE_LIMIT_MAX=lots\n`)
    const reload = await app.reloadConfig()
    assert.equal(reload.ok, false)
    assert.match(reload.error ?? '', /RATE_LIMIT_MAX/)
    assert.equal(app.config.RATE_LIMIT_MAX, 0)
    assert.equal((await list()).statusCode, 401, 'the keys stay in force')

    await rm(file)
    const missing = await app.reloadConfig()
    assert.equal(missing.ok, false)
    assert.match(missing.error ?? '', /SAGE_ENV_FILE .*sage\.env cannot be read: ENOENT/)
    assert.match(logs.join(''), /configuration not reloaded; everything stays as it was/)
  })
})

describe('SIGHUP in the process', () => {
  test('a real SIGHUP reloads SAGE_ENV_FILE and the service keeps serving', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'sage-reload-'))
    const file = join(dir, 'sage.env')
    await writeFile(file, 'RATE_LIMIT_MAX=5\n')
    const store = await processStore()
    const sage = await startSage({ ...store.env, SAGE_ENV_FILE: file, LOG_LEVEL: 'info' })
    const limit = async () => (await fetch(`${sage.url}/v1/memories?namespace=hup`)).headers.get('x-ratelimit-limit')
    try {
      assert.equal(await limit(), '5')
      await writeFile(file, 'RATE_LIMIT_MAX=9\nDB_POOL_MAX=3\n')
      sage.child.kill('SIGHUP')
      await waitFor('the reload', () => sage.output().includes('configuration reloaded'))
      assert.equal(await limit(), '9')
      assert.match(sage.output(), /"variables":\["DB_POOL_MAX"\]/)
      // The process environment wins over the file: LOG_LEVEL=info came from it and stays.
      await writeFile(file, 'RATE_LIMIT_MAX=9\nLOG_LEVEL=silent\n')
      sage.child.kill('SIGHUP')
      await waitFor('the second reload', () => sage.output().split('configuration reloaded').length === 3)
      assert.equal((await fetch(`${sage.url}/health`)).status, 200)
    } finally {
      assert.equal(await sage.stop('SIGTERM'), 0, sage.output())
      await store.drop()
      await rm(dir, { recursive: true, force: true })
    }
  })
})
