import { Client, ProtocolError } from '@modelcontextprotocol/client'
import { StdioClientTransport } from '@modelcontextprotocol/client/stdio'
import assert from 'node:assert/strict'
import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { before, describe, test, type TestContext } from 'node:test'
import { buildTestApp, memoryCount, REPO_ROOT, backends, type TestStore } from '../helper.js'
import { listen, useListeningApp } from '../support/listening-app.js'
import { callTool, ERAS, textOf, type Era } from '../support/mcp-client.js'
import { freePort, runSage } from '../support/sage-process.js'

const CLI = join(REPO_ROOT, 'dist/src/cli.js')
const SECRETS = { alice: 'alice-secret-0123456789abcdef', bob: 'bob-secret-0123456789abcdef00' }
const KEYS = `alice:${SECRETS.alice}=team-a/*;bob:${SECRETS.bob}=billing:delete`

/** `sage-memory mcp` as an agent starts it, driven by the SDK's own stdio client. */
async function stdioClient(t: TestContext, env: Record<string, string>, options: { era?: Era; args?: string[] } = {}): Promise<Client> {
  const transport = new StdioClientTransport({ command: process.execPath, args: [CLI, 'mcp', ...(options.args ?? [])], env: { PATH: process.env.PATH ?? '', ...env }, stderr: 'pipe' })
  const client = new Client({ name: 'sage-test', version: '1.0.0' }, { versionNegotiation: { mode: options.era === 'modern' ? 'auto' : 'legacy' } })
  await client.connect(transport)
  t.after(() => client.close())
  return client
}

const cli = (args: string[], cwd: string, env: Record<string, string>) => runSage(args, env, 60_000, cwd)

describe('sage-memory mcp: the stdio server in front of a running Sage', () => {
  const suite = useListeningApp(backends()[0]!, { SAGE_API_KEYS: KEYS })
  let store: TestStore
  let sageUrl: string
  before(() => {
    store = suite.store
    sageUrl = suite.url
  })

  for (const era of ERAS) {
    test(`${era} era: lists the tools and forwards each call, with the key of its environment`, async (t) => {
      await store.reset()
      const client = await stdioClient(t, { SAGE_URL: sageUrl, SAGE_API_KEY: SECRETS.bob }, { era })
      assert.equal(client.getProtocolEra(), era)
      assert.deepEqual((await client.listTools()).tools.map((tool) => tool.name), ['remember', 'recall', 'get_memory', 'forget', 'list_sessions', 'recent'])
      const saved = await callTool(client, 'remember', { content: 'Invoices are numbered per calendar year', session_id: 'stdio' })
      assert.deepEqual(saved.structuredContent, { id: saved.structuredContent!.id, created: true, namespace: 'billing' })
      const id = saved.structuredContent!.id as string
      assert.equal((await callTool(client, 'recall', { query: 'how are invoices numbered?' })).structuredContent!.results[0].id, id)
      assert.equal((await callTool(client, 'get_memory', { id })).structuredContent!.content, 'Invoices are numbered per calendar year')
      assert.equal((await callTool(client, 'recent', {})).structuredContent!.items.length, 1)
      assert.equal((await callTool(client, 'list_sessions', {})).structuredContent!.items[0].session_id, 'stdio')
      assert.equal((await callTool(client, 'forget', { id })).structuredContent!.deleted, 1)
      assert.equal(await memoryCount(store.db), 0)
    })
  }

  test('Sage decides: scopes, bad arguments and a huge argument are its tool errors, an unknown tool its protocol error', async (t) => {
    await store.reset()
    const alice = await stdioClient(t, { SAGE_URL: sageUrl, SAGE_API_KEY: SECRETS.alice }, { args: ['--namespace', 'team-a/api'] })
    assert.equal((await callTool(alice, 'remember', { content: 'team A owns the API gateway' })).structuredContent!.namespace, 'team-a/api')
    const outside = await callTool(alice, 'recall', { query: 'x', namespace: 'billing' })
    assert.deepEqual([outside.isError, textOf(outside)], [true, 'namespace "billing" is outside this key\'s scope'])
    assert.match(textOf(await callTool(alice, 'forget', { session_id: 's' })), /may not delete/)
    assert.match(textOf(await callTool(alice, 'remember', { content: 'x', colour: 'red' })), /unknown field "colour"/)
    assert.equal(textOf(await callTool(alice, 'remember', { content: 'z'.repeat(200_000) })), 'arguments.content must be at most 100000 characters')
    await assert.rejects(alice.callTool({ name: 'nope', arguments: {} }), (error: unknown) => error instanceof ProtocolError && error.code === -32602)
    assert.equal(await memoryCount(store.db), 1)

    const keyless = await stdioClient(t, { SAGE_URL: sageUrl })
    assert.match(textOf(await callTool(keyless, 'recent', {})), /needs a valid API key \(401\): set SAGE_API_KEY/)
  })

  test('with Sage not running yet, the tools are listed and each call says how to start it; once it runs, calls go through', async (t) => {
    await store.reset()
    const port = await freePort()
    const client = await stdioClient(t, { SAGE_URL: `http://127.0.0.1:${port}`, SAGE_API_KEY: SECRETS.bob })
    assert.equal((await client.listTools()).tools.length, 6)
    const down = await callTool(client, 'recall', { query: 'anything' })
    assert.equal(down.isError, true)
    assert.match(textOf(down), new RegExp(`nothing answers at http://127.0.0.1:${port}/mcp \\(ECONNREFUSED\\): start it with \`sage-memory serve\``))

    const late = await buildTestApp(store.db, { SAGE_API_KEYS: KEYS })
    t.after(() => late.close())
    await late.listen({ host: '127.0.0.1', port })
    assert.equal((await callTool(client, 'remember', { content: 'Sage started after the agent' })).structuredContent!.created, true)
  })
})

describe('sage-memory mcp install|uninstall', () => {
  async function sandbox(t: TestContext) {
    const root = await mkdtemp(join(tmpdir(), 'sage-mcp-cli-'))
    t.after(() => rm(root, { recursive: true, force: true }))
    const project = join(root, 'project')
    const home = join(root, 'home')
    await mkdir(project, { recursive: true })
    await mkdir(home)
    return { project, home }
  }

  test('install writes each agent\'s file, says that Sage answers at the URL written, and a second run changes nothing', async (t) => {
    const store = await backends()[0]!.create()
    t.after(() => store.drop())
    const app = await buildTestApp(store.db)
    t.after(() => app.close())
    const sageUrl = await listen(app)
    const { project, home } = await sandbox(t)
    const env = { HOME: home, SAGE_URL: sageUrl }
    const agents = ['claude-code', 'cursor', 'codex', 'vscode', 'windsurf', 'gemini']

    const first = await cli(['mcp', 'install', ...agents], project, env)
    assert.equal(first.code, 0, first.stderr)
    for (const name of ['Claude Code', 'Cursor', 'Codex CLI', 'VS Code', 'Windsurf', 'Gemini CLI']) assert.match(first.stdout, new RegExp(`${name}: Sage's MCP server written to`))
    assert.match(first.stdout, new RegExp(`Sage answers at ${sageUrl}/mcp: tools remember, recall, get_memory, forget, list_sessions, recent`))
    assert.deepEqual(JSON.parse(await readFile(join(project, '.mcp.json'), 'utf8')), { mcpServers: { sage: { type: 'http', url: `${sageUrl}/mcp` } } })
    assert.equal(await readFile(join(home, '.codex', 'config.toml'), 'utf8'), `[mcp_servers.sage]\nurl = "${sageUrl}/mcp"\n`)

    const second = await cli(['mcp', 'install', ...agents], project, env)
    assert.equal(second.code, 0)
    assert.equal(second.stdout.match(/already in .*; nothing changed/g)?.length, 6)

    // Backups go where hooks install keeps its own, never into the project.
    await writeFile(join(project, '.mcp.json'), JSON.stringify({ mcpServers: { other: { command: 'x' } } }))
    assert.match((await cli(['mcp', 'install', 'claude-code'], project, env)).stdout, /backup of the previous file: .*\.local\/share\/sage-memory\/settings-backups\//)
    assert.deepEqual((await readdir(project)).filter((name) => name.includes('.bak-')), [])

    const removed = await cli(['mcp', 'uninstall', ...agents], project, env)
    assert.equal(removed.code, 0, removed.stderr)
    // Install created five of the six files, which go again; the project's .mcp.json was the user's.
    assert.equal(removed.stdout.match(/mcp install created it and it held nothing else: deleted/g)?.length, 5)
    assert.deepEqual(JSON.parse(await readFile(join(project, '.mcp.json'), 'utf8')), { mcpServers: { other: { command: 'x' } } })
    await assert.rejects(stat(join(home, '.codex', 'config.toml')), { code: 'ENOENT' })
  })

  test('install refuses a URL where Sage does not answer, or a key it does not take, and writes nothing; --no-check installs anyway', async (t) => {
    const { project, home } = await sandbox(t)
    const port = await freePort()
    const nowhere = await cli(['mcp', 'install', 'claude-code', '--url', `http://127.0.0.1:${port}`, '--namespace', 'shop'], project, { HOME: home })
    assert.equal(nowhere.code, 1)
    assert.match(nowhere.stderr, new RegExp(`nothing answers at http://127.0.0.1:${port}/mcp\\?namespace=shop \\(ECONNREFUSED\\).*; --no-check installs anyway`))
    await assert.rejects(stat(join(project, '.mcp.json')), { code: 'ENOENT' })

    const anyway = await cli(['mcp', 'install', 'claude-code', '--url', `http://127.0.0.1:${port}`, '--key-env', 'MY_SAGE_KEY', '--namespace', 'shop', '--no-check'], project, { HOME: home })
    assert.equal(anyway.code, 0, anyway.stderr)
    const written = JSON.parse(await readFile(join(project, '.mcp.json'), 'utf8'))
    assert.deepEqual(written.mcpServers.sage, { type: 'http', url: `http://127.0.0.1:${port}/mcp?namespace=shop`, headers: { Authorization: 'Bearer ${MY_SAGE_KEY}' } })

    const store = await backends()[0]!.create()
    t.after(() => store.drop())
    const app = await buildTestApp(store.db, { SAGE_API_KEYS: KEYS })
    t.after(() => app.close())
    const env = { HOME: home, SAGE_URL: await listen(app) }
    const keyless = await cli(['mcp', 'install', 'cursor'], project, env)
    assert.match(keyless.stderr, /requires an API key: pass --key-env/)
    const wrong = await cli(['mcp', 'install', 'cursor', '--key-env', 'MY_SAGE_KEY'], project, { ...env, MY_SAGE_KEY: 'not-the-key-0123456789' })
    assert.match(wrong.stderr, /does not accept the key in MY_SAGE_KEY/)
    await assert.rejects(stat(join(project, '.cursor', 'mcp.json')), { code: 'ENOENT' })
    const unset = await cli(['mcp', 'install', 'cursor', '--key-env', 'MY_SAGE_KEY'], project, env)
    assert.equal(unset.code, 0, unset.stderr)
    assert.match(unset.stdout, /note: MY_SAGE_KEY is not set in this shell, so the key was not checked/)
    const right = await cli(['mcp', 'install', 'gemini'], project, { ...env, SAGE_API_KEY: SECRETS.bob })
    assert.equal(right.code, 0, right.stderr)
    assert.match(right.stdout, /note: Sage answers at .*\/mcp: tools remember/)
  })

  test('install --stdio writes the command that starts `sage-memory mcp`, with SAGE_URL for it', async (t) => {
    const { project, home } = await sandbox(t)
    const result = await cli(['mcp', 'install', 'cursor', '--stdio', '--no-check', '--url', 'http://127.0.0.1:9'], project, { HOME: home, SAGE_API_KEY: 'x'.repeat(20) })
    assert.equal(result.code, 0, result.stderr)
    const entry = JSON.parse(await readFile(join(project, '.cursor', 'mcp.json'), 'utf8')).mcpServers.sage
    assert.deepEqual(entry, { command: process.execPath, args: [CLI, 'mcp'], env: { SAGE_URL: 'http://127.0.0.1:9', SAGE_API_KEY: '${env:SAGE_API_KEY}' } })
    assert.doesNotMatch(JSON.stringify(entry), /xxxxxxxx/, 'the key itself is never written')
  })

  test('a file it cannot merge into is left as it was, with the reason, and the run fails', async (t) => {
    const { project, home } = await sandbox(t)
    await writeFile(join(project, '.mcp.json'), '{ "mcpServers": ')
    const broken = await cli(['mcp', 'install', 'claude-code', '--no-check'], project, { HOME: home })
    assert.equal(broken.code, 1)
    assert.match(broken.stderr, /\.mcp\.json is not valid JSON .*; nothing was changed/)
    assert.equal(await readFile(join(project, '.mcp.json'), 'utf8'), '{ "mcpServers": ')
    const unknown = await cli(['mcp', 'install', 'emacs'], project, { HOME: home })
    assert.match(unknown.stderr, /unknown agent "emacs"; the agents are claude-code, cursor, codex, vscode, windsurf, gemini/)
    const scope = await cli(['mcp', 'install', 'windsurf', '--project', '--no-check'], project, { HOME: home })
    assert.match(scope.stderr, /Windsurf has no project MCP settings; use --user/)
  })
})
