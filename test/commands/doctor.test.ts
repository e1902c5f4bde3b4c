import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, test, type TestContext } from 'node:test'
import { promisify } from 'node:util'
import type { FastifyInstance } from 'fastify'
import { backends, buildTestApp, memoryCount, REPO_ROOT, type TestStore } from '../helper.js'
import { freePort } from '../support/sage-process.js'

const run = promisify(execFile)
const CLI = join(REPO_ROOT, 'dist/src/cli.js')
const SECRET = 'doctor-secret-0123456789abcdef00'

async function cli(args: string[], cwd: string, home: string, env: Record<string, string>) {
  try {
    const { stdout, stderr } = await run(process.execPath, [CLI, ...args], { cwd, env: { PATH: process.env.PATH ?? '', HOME: home, ...env } })
    return { code: 0, stdout, stderr }
  } catch (error) {
    const failed = error as { code: number; stdout: string; stderr: string }
    return { code: failed.code, stdout: failed.stdout, stderr: failed.stderr }
  }
}

describe('sage-memory doctor against a live Sage', () => {
  let store: TestStore
  let app: FastifyInstance
  let url: string
  before(async () => {
    store = await backends()[0]!.create()
    // The deadline is generous: the machine is shared, and the test is about what doctor says.
    app = await buildTestApp(store.db, { SAGE_API_KEYS: `dev:${SECRET}=*:delete`, HOOK_DEADLINE_MS: 5_000 })
    await app.listen({ port: 0, host: '127.0.0.1' })
    url = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`
  })
  after(async () => {
    await app?.close()
    await store?.drop()
  })

  /** A project folder (its namespace is its name, "billing") and a home, both empty. */
  async function sandbox(t: TestContext) {
    const root = await mkdtemp(join(tmpdir(), 'sage-doctor-'))
    t.after(() => rm(root, { recursive: true, force: true }))
    const project = join(root, 'billing')
    const home = join(root, 'home')
    await mkdir(project)
    await mkdir(home)
    const env = { SAGE_URL: url, SAGE_API_KEY: SECRET }
    return { project, home, env, doctor: (args: string[] = [], extra: Record<string, string> = {}) => cli(['doctor', ...args], project, home, { ...env, ...extra }) }
  }

  test('with Sage up, a good key and the hooks installed, every check is ok and the prompt is explained', async (t) => {
    const { project, home, env, doctor } = await sandbox(t)
    assert.equal((await cli(['hooks', 'install', '--key-env', 'SAGE_API_KEY'], project, home, env)).code, 0)
    await writeFile(join(project, '.mcp.json'), JSON.stringify({ mcpServers: { sage: { command: 'sage-memory', args: ['mcp'] }, other: { command: 'x' } } }))
    // Agents that keep their servers under other keys and name the URL otherwise are found too.
    await mkdir(join(project, '.vscode'))
    await writeFile(join(project, '.vscode', 'mcp.json'), JSON.stringify({ servers: { sage: { type: 'http', url: `${url}/mcp` } } }))
    await mkdir(join(home, '.codeium', 'windsurf'), { recursive: true })
    await writeFile(join(home, '.codeium', 'windsurf', 'mcp_config.json'), JSON.stringify({ mcpServers: { sage: { serverUrl: `${url}/mcp` } } }))
    const seeded = await app.inject({
      method: 'POST', url: '/v1/memories/batch', headers: { authorization: `Bearer ${SECRET}` },
      payload: { items: [
        { namespace: 'billing', session_id: 'earlier', role: 'assistant', content: 'The ledger export uses keyset pagination on (account_id, posted_at, id), pages of 5,000 rows.' },
        { namespace: 'billing', session_id: 'earlier', role: 'user', content: 'Set up CI caching for node_modules.' }
      ] }
    })
    assert.equal(seeded.statusCode, 201, seeded.body)
    const before = await memoryCount(store.db)

    const result = await doctor(['--prompt', 'how do we paginate the ledger export?'])
    t.diagnostic(result.stdout)
    assert.equal(result.code, 0, result.stdout + result.stderr)
    assert.match(result.stdout, new RegExp(`^ok    Sage answers at ${url} and is ready$`, 'm'))
    assert.match(result.stdout, /^ok {4}the key in SAGE_API_KEY is accepted: "dev", scopes \*, may delete$/m)
    assert.match(result.stdout, new RegExp(`^ok {4}Claude Code, project \\(.*settings\\.json\\): Sage's hooks for SessionStart, UserPromptSubmit, Stop, SubagentStop, PostCompact -> ${url}$`, 'm'))
    assert.match(result.stdout, /^ok {4}Claude Code MCP, project \(.*\.mcp\.json\): MCP server "sage" -> sage-memory mcp$/m)
    assert.match(result.stdout, new RegExp(`^ok {4}VS Code MCP, project \\(.*mcp\\.json\\): MCP server "sage" -> ${url}/mcp$`, 'm'))
    assert.match(result.stdout, new RegExp(`^ok {4}Windsurf MCP, user \\(.*mcp_config\\.json\\): MCP server "sage" -> ${url}/mcp$`, 'm'))
    assert.doesNotMatch(result.stdout, /"other"/)
    assert.match(result.stdout, /^ok {4}project setting: on \(no \.sage\.json\)/m)
    assert.match(result.stdout, /^ok {4}this folder's namespace: billing$/m)
    assert.match(result.stdout, /--prompt in namespace billing: it would be injected/)
    assert.match(result.stdout, /^ {6}\+ \d\.\d{3} \(vector \d\.\d{3}, text \d\.\d{3}; matched [a-z, ]+\) score_and_terms: \[assistant\] The ledger export uses keyset pagination/m)
    assert.match(result.stdout, /what the agent would read:\n {8}Sage recalled these/)
    assert.match(result.stdout, /\nSage works here\.\n$/)
    assert.equal(await memoryCount(store.db), before, 'the dry run saved nothing')
  })

  test('a wrong key, and no key at all, fail with the fix', async (t) => {
    const { doctor } = await sandbox(t)
    const wrong = await doctor([], { SAGE_API_KEY: 'not-the-key-0123456789' })
    assert.equal(wrong.code, 1)
    assert.match(wrong.stdout, /^FAIL {2}Sage does not accept the key in SAGE_API_KEY\n {6}fix: set SAGE_API_KEY to a key listed in Sage's SAGE_API_KEYS/m)
    const none = await doctor([], { SAGE_API_KEY: '' })
    assert.equal(none.code, 1)
    assert.match(none.stdout, /^FAIL {2}Sage requires an API key and SAGE_API_KEY is not set here\n {6}fix: export SAGE_API_KEY=/m)
    assert.match(none.stdout, /check(s)? fail/)
  })

  test('hooks installed at two levels are a warning that says which to remove', async (t) => {
    const { project, home, env, doctor } = await sandbox(t)
    assert.equal((await cli(['hooks', 'install', '--key-env', 'SAGE_API_KEY'], project, home, env)).code, 0)
    assert.equal((await cli(['hooks', 'install', '--user', '--key-env', 'SAGE_API_KEY'], project, home, env)).code, 0)
    const result = await doctor()
    assert.equal(result.code, 0, result.stdout)
    assert.match(result.stdout, /^warn {2}Sage's hooks are installed at 2 levels \(project, user\): each event is saved and injected twice\n {6}fix: keep one: sage-memory hooks uninstall --user$/m)
  })

  test('an unreachable Sage, and hooks that point nowhere, fail with the fix', async (t) => {
    const { project, home, env, doctor } = await sandbox(t)
    const dead = `http://127.0.0.1:${await freePort()}`
    assert.equal((await cli(['hooks', 'install', '--local', '--no-check', '--url', dead], project, home, env)).code, 0)
    const result = await doctor()
    assert.equal(result.code, 1)
    assert.match(result.stdout, new RegExp(`^FAIL  Claude Code, local \\(.*\\): Sage's hooks for .* -> ${dead}, where nothing answers\\n {6}fix: start Sage there, or reinstall: sage-memory hooks install --local --url`, 'm'))
    const down = await doctor([], { SAGE_URL: dead })
    assert.equal(down.code, 1)
    assert.match(down.stdout, new RegExp(`^FAIL  Sage does not answer at ${dead}: nothing answers at ${dead} \\(ECONNREFUSED\\)\\n {6}fix: start it`, 'm'))
  })

  test('a project that opted out is listed, and --prompt says nothing would be saved', async (t) => {
    const { project, doctor } = await sandbox(t)
    await writeFile(join(project, '.sage.json'), '{"mode": "off"}')
    const result = await doctor(['--prompt', 'anything'])
    assert.match(result.stdout, /^ok {4}project setting: off \(.*\.sage\.json\): nothing is saved or injected/m)
    assert.match(result.stdout, /^ok {4}--prompt: nothing would be saved or injected \(project off\)$/m)
  })
})
