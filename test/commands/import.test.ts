import assert from 'node:assert/strict'
import { copyFile, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, test } from 'node:test'
import type { FastifyInstance } from 'fastify'
import { backends, buildTestApp, REPO_ROOT, type TestStore } from '../helper.js'
import { freePort, runSage } from '../support/sage-process.js'

const TRANSCRIPT = join(REPO_ROOT, 'test/fixtures/claude-code/transcript.jsonl')
const KEY = 'import-secret-0123456789'

describe('sage-memory import against a running Sage', () => {
  let store: TestStore
  let app: FastifyInstance
  let url: string
  let scratch: string
  const auth = { authorization: `Bearer ${KEY}` }
  const memories = async (namespace: string) =>
    (await app.inject({ method: 'GET', url: `/v1/memories?namespace=${namespace}&limit=500`, headers: auth })).json().items as Array<Record<string, unknown>>
  const batchRequests = async () => {
    const text = (await app.inject({ method: 'GET', url: '/metrics' })).body
    const match = /http_request_duration_seconds_count\{method="POST",route="\/v1\/memories\/batch",status_code="201"\} (\d+)/.exec(text)
    return Number(match?.[1] ?? 0)
  }

  before(async () => {
    store = await backends()[0]!.create()
    app = await buildTestApp(store.db, { SAGE_API_KEYS: `importer:${KEY}=*` })
    await app.listen({ port: 0, host: '127.0.0.1' })
    url = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`
    scratch = await mkdtemp(join(tmpdir(), 'sage-import-'))
  })
  after(async () => {
    await app?.close()
    await store?.drop()
    await rm(scratch, { recursive: true, force: true })
  })

  test('the fixture transcript yields its memories in the namespace of its cwd; a second import creates none', async () => {
    const first = await runSage(['import', TRANSCRIPT, '--url', url], { SAGE_API_KEY: KEY })
    assert.equal(first.code, 0, first.stderr + first.stdout)
    assert.match(first.stdout, /Imported 1 file in [\d.]+ s: 5 memories sent, 5 created, 0 duplicates/)
    assert.match(first.stdout, /Lines read: 10; skipped: meta 1, summary 1, system 1, tool_result 1, thinking 1/)

    const saved = await memories('billing')
    assert.deepEqual(
      saved.map((m) => [m.created_at, m.role, m.source_id, m.session_id]).sort(),
      [
        ['2026-11-20T09:00:00.000Z', 'user', 'a1000000-0000-4000-8000-000000000001'],
        ['2026-11-20T09:00:02.000Z', 'assistant', 'a1000000-0000-4000-8000-000000000002'],
        ['2026-11-20T09:00:03.000Z', 'tool', 'a1000000-0000-4000-8000-000000000004:tools'],
        ['2026-11-20T09:00:06.000Z', 'assistant', 'a1000000-0000-4000-8000-000000000006'],
        ['2026-11-20T09:31:00.000Z', 'user', 'a1000000-0000-4000-8000-000000000009']
      ].map((row) => [...row, '7d1f2c3a-5b6e-4f70-8a9b-0c1d2e3f4a5b'])
    )
    const turn = saved.find((m) => m.source_id === 'a1000000-0000-4000-8000-000000000006')!
    assert.match(turn.content as string, /^The export loads the whole ledger into memory/)
    assert.deepEqual(turn.metadata, { cwd: '/home/dev/src/billing', git_branch: 'main', tool: 'claude-code', transcript: TRANSCRIPT })

    const second = await runSage(['import', TRANSCRIPT, '--url', url], { SAGE_API_KEY: KEY })
    assert.equal(second.code, 0)
    assert.match(second.stdout, /5 memories sent, 0 created, 5 duplicates/)
    assert.equal((await memories('billing')).length, 5)
  })

  test('a folder is walked; batches hold at most 500; --namespace puts everything in one namespace', async () => {
    const folder = join(scratch, 'projects')
    await mkdir(join(folder, '-home-dev-src-billing'), { recursive: true })
    await copyFile(TRANSCRIPT, join(folder, '-home-dev-src-billing', 'a.jsonl'))
    const lines = Array.from({ length: 1_200 }, (_, i) =>
      JSON.stringify({
        type: 'user',
        sessionId: 'bulk',
        cwd: '/home/dev/src/bulk',
        uuid: `b0000000-0000-4000-8000-${String(i).padStart(12, '0')}`,
        timestamp: new Date(Date.UTC(2026, 10, 1, 0, 0, i)).toISOString(),
        message: { role: 'user', content: `Bulk prompt number ${i} about the ledger export.` }
      })
    )
    await writeFile(join(folder, 'bulk.jsonl'), `${lines.join('\n')}\nnot json at all\n`)

    const requestsBefore = await batchRequests()
    const result = await runSage(['import', folder, '--url', url, '--namespace', 'imported', '--key-env', 'MY_KEY'], { MY_KEY: KEY })
    assert.equal(result.code, 0, result.stderr + result.stdout)
    assert.match(result.stdout, /Imported 2 files in [\d.]+ s: 1205 memories sent, 1205 created, 0 duplicates/)
    assert.match(result.stdout, /malformed 1/)
    // 5 + 1,200 memories: the fixture's 5 in one batch, the bulk file's in 500 + 500 + 200.
    assert.equal((await batchRequests()) - requestsBefore, 4)
    const imported = await memories('imported')
    assert.equal(imported.length, 500)
    assert.deepEqual(await memories('bulk'), [])
  })

  test('a key that is refused stops the import with a message saying what to do', async () => {
    const noKey = await runSage(['import', TRANSCRIPT, '--url', url])
    assert.equal(noKey.code, 1)
    assert.match(noKey.stderr, /Sage refused the request \(401: an API key is required.*\) for namespace "billing"; pass a key/)
    const unset = await runSage(['import', TRANSCRIPT, '--url', url, '--key-env', 'NOT_SET'])
    assert.equal(unset.code, 1)
    assert.match(unset.stderr, /NOT_SET is not set/)
  })

  test('an unreachable Sage is an error at once, not a hang', async () => {
    const nobody = `http://127.0.0.1:${await freePort()}`
    const started = Date.now()
    const result = await runSage(['import', TRANSCRIPT, '--url', nobody], { SAGE_API_KEY: KEY })
    assert.equal(result.code, 1)
    assert.match(result.stderr, /cannot reach Sage at http:\/\/127\.0\.0\.1:\d+: fetch failed \(ECONNREFUSED\)/)
    // Nothing ever answered: a wrong address fails at once rather than after the retries meant for restarts.
    assert.ok(Date.now() - started < 10_000)
  })
})
