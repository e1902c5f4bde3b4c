import assert from 'node:assert/strict'
import { execFile, spawn } from 'node:child_process'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, test } from 'node:test'
import { promisify } from 'node:util'
import type { FastifyInstance } from 'fastify'
import { EXPORTED_FIELDS } from '../../src/backup/memory-export.js'
import { isExportedMemory } from '../../src/backup/memory-import.js'
import { backends, buildTestApp, REPO_ROOT, type TestStore } from '../helper.js'

const run = promisify(execFile)
const CLI = join(REPO_ROOT, 'dist/src/cli.js')
const KEY = 'export-secret-0123456789'
const COUNT = 1_234

async function cli(args: string[], env: Record<string, string> = {}) {
  try {
    const { stdout, stderr } = await run(process.execPath, [CLI, ...args], { env: { PATH: process.env.PATH ?? '', SAGE_API_KEY: KEY, ...env }, maxBuffer: 64 * 1024 * 1024 })
    return { code: 0, stdout, stderr }
  } catch (error) {
    const failed = error as { code: number; stdout: string; stderr: string }
    return { code: failed.code, stdout: failed.stdout, stderr: failed.stderr }
  }
}

type Row = Record<string, unknown>

for (const backend of backends()) {
  describe(`export and import round trip on ${backend.name}`, () => {
    const stores: TestStore[] = []
    const apps: FastifyInstance[] = []
    let source: { app: FastifyInstance; url: string }
    let target: { app: FastifyInstance; url: string }
    let scratch: string
    const auth = { authorization: `Bearer ${KEY}` }

    const serve = async () => {
      const store = await backend.create()
      const app = await buildTestApp(store.db, { SAGE_API_KEYS: `backup:${KEY}=*:delete`, RATE_LIMIT_MAX: 0 })
      await app.listen({ port: 0, host: '127.0.0.1' })
      stores.push(store)
      apps.push(app)
      return { app, url: `http://127.0.0.1:${(app.server.address() as AddressInfo).port}` }
    }
    const all = async (app: FastifyInstance, namespace: string): Promise<Row[]> => {
      const rows: Row[] = []
      let cursor: string | null = null
      do {
        const page = (await app.inject({ method: 'GET', url: `/v1/memories?namespace=${namespace}&limit=500${cursor ? `&cursor=${cursor}` : ''}`, headers: auth })).json() as { items: Row[]; next_cursor: string | null }
        rows.push(...page.items)
        cursor = page.next_cursor
      } while (cursor)
      return rows
    }
    /** What must survive the round trip: everything but the id (a new store gives new ids) and the source id. */
    const kept = (rows: Row[]) =>
      rows.map(({ id: _id, source_id: _source, ...rest }) => JSON.stringify(rest)).sort()

    before(async () => {
      scratch = await mkdtemp(join(tmpdir(), 'sage-export-'))
      source = await serve()
      target = await serve()
      const items = Array.from({ length: COUNT }, (_, i) => ({
        namespace: 'proj',
        session_id: i % 3 === 0 ? null : `s-${i % 7}`,
        role: (['user', 'assistant', 'note', 'tool', 'system'] as const)[i % 5],
        content: `Memory ${i}: the ledger export ${i % 2 ? 'uses keyset pagination' : 'needs an index'}\nsecond line, 日本語 ${i}`,
        metadata: { cwd: '/src/proj', n: i, nested: { ok: i % 2 === 0 } },
        tags: i % 4 === 0 ? ['ops', `t${i % 3}`] : [],
        source_id: i % 2 === 0 ? `line-${i}` : null,
        created_at: new Date(Date.UTC(2025, 0, 1) + i * 61_000 + (i % 1000)).toISOString()
      }))
      for (let i = 0; i < items.length; i += 500) {
        const res = await source.app.inject({ method: 'POST', url: '/v1/memories/batch', headers: auth, payload: { items: items.slice(i, i + 500) } })
        assert.equal(res.statusCode, 201, res.body)
      }
      await source.app.inject({ method: 'POST', url: '/v1/memories', headers: auth, payload: { namespace: 'elsewhere', content: 'not exported' } })
    })
    after(async () => {
      await Promise.all(apps.map((app) => app.close()))
      await Promise.all(stores.map((store) => store.drop()))
      await rm(scratch, { recursive: true, force: true })
    })

    test('export writes every memory of the namespace once, every field, times kept', async () => {
      const file = join(scratch, 'proj.jsonl')
      const result = await cli(['export', '--namespace', 'proj', '--url', source.url, '--output', file])
      assert.equal(result.code, 0, result.stderr)
      assert.match(result.stderr, new RegExp(`Exported ${COUNT} memories of proj`))
      const lines = (await readFile(file, 'utf8')).trimEnd().split('\n').map((line) => JSON.parse(line) as Row)
      assert.equal(lines.length, COUNT)
      for (const line of lines) {
        assert.deepEqual(Object.keys(line), [...EXPORTED_FIELDS])
        assert.ok(isExportedMemory(line))
      }
      assert.deepEqual(lines, await all(source.app, 'proj'))
      assert.equal(new Set(lines.map((line) => line.id)).size, COUNT)
    })

    test('import into another store recreates the namespace; a second import creates nothing', async () => {
      const file = join(scratch, 'proj.jsonl')
      const first = await cli(['import', file, '--url', target.url])
      assert.equal(first.code, 0, first.stderr + first.stdout)
      assert.match(first.stdout, new RegExp(`Imported an export in [\\d.]+ s: ${COUNT} memories sent, ${COUNT} created, 0 duplicates`))
      const original = await all(source.app, 'proj')
      const imported = await all(target.app, 'proj')
      assert.deepEqual(kept(imported), kept(original))
      // A source id is kept; a memory without one is keyed by its exported id, which is what makes a re-import idempotent.
      const byContent = new Map(original.map((row) => [row.content, row]))
      for (const row of imported) {
        const was = byContent.get(row.content)!
        assert.equal(row.source_id, was.source_id ?? was.id)
      }

      const again = await cli(['import', file, '--url', target.url])
      assert.equal(again.code, 0, again.stderr)
      assert.match(again.stdout, new RegExp(`${COUNT} memories sent, 0 created, ${COUNT} duplicates`))
      assert.equal((await all(target.app, 'proj')).length, COUNT)
      // Into the store it came from, too: nothing is doubled.
      const home = await cli(['import', file, '--url', source.url])
      assert.match(home.stdout, /0 created/)
    })

    test('one session, piped from export to import into another namespace', async () => {
      const exporter = spawn(process.execPath, [CLI, 'export', '--namespace', 'proj', '--session', 's-1', '--url', source.url], { env: { PATH: process.env.PATH ?? '', SAGE_API_KEY: KEY } })
      const importer = spawn(process.execPath, [CLI, 'import', '-', '--namespace', 'restored', '--url', target.url], { env: { PATH: process.env.PATH ?? '', SAGE_API_KEY: KEY } })
      exporter.stdout.pipe(importer.stdin)
      let said = ''
      importer.stdout.on('data', (chunk: Buffer) => (said += chunk.toString()))
      const [exported, imported] = await Promise.all([
        new Promise((resolve) => exporter.on('exit', resolve)),
        new Promise((resolve) => importer.on('exit', resolve))
      ])
      assert.deepEqual([exported, imported], [0, 0], said)
      const session = (await all(source.app, 'proj')).filter((row) => row.session_id === 's-1')
      assert.ok(session.length > 100)
      const restored = await all(target.app, 'restored')
      assert.equal(restored.length, session.length)
      assert.deepEqual(kept(restored.map((row) => ({ ...row, namespace: 'proj' }))), kept(session))
    })

    test('a line that is not an exported memory is reported by number and the rest still lands', async () => {
      const file = join(scratch, 'damaged.jsonl')
      const good = (n: number) => JSON.stringify({ id: `00000000-0000-4000-8000-00000000000${n}`, namespace: 'damaged', session_id: null, role: 'note', content: `fine ${n}`, metadata: {}, tags: [], source_id: null, created_at: '2026-01-01T00:00:00.000Z' })
      await writeFile(file, `${good(1)}\n{"id": "x", "namespace": "damaged"\n${good(2)}\n{"type":"user","uuid":"u"}\n`)
      const result = await cli(['import', file, '--url', target.url])
      assert.equal(result.code, 1)
      assert.match(result.stdout, /2 memories sent, 2 created/)
      assert.match(result.stdout, /Lines that are not an exported memory: 2\n {2}line 2: not JSON: .*\n {2}line 4: not a memory of sage-memory export/)
      assert.equal((await all(target.app, 'damaged')).length, 2)
    })
  })
}
