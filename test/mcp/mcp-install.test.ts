import assert from 'node:assert/strict'
import { chmod, mkdir, mkdtemp, readdir, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { test, type TestContext } from 'node:test'
import { parse as parseJsonc } from 'jsonc-parser'
import { parse as parseToml } from 'smol-toml'
import { MCP_AGENTS, mcpAgent, type AgentPlaces, type McpEntryOptions, type McpScope } from '../../src/mcp/mcp-agents.js'
import { installMcp, isSageEntry, mcpSettingsPath, uninstallMcp } from '../../src/mcp/mcp-install.js'

const URL_ = 'http://127.0.0.1:8765/mcp'
const KEYED: McpEntryOptions = { url: URL_, apiKeyEnv: 'SAGE_API_KEY' }

/** Each agent's settings as a user has them: other servers, other settings, and the comments a format allows. */
const EXISTING: Record<string, { scope: McpScope; text: string }> = {
  'claude-code': {
    scope: 'project',
    text: `${JSON.stringify({ mcpServers: { github: { type: 'http', url: 'https://api.githubcopilot.com/mcp/' } } }, null, 2)}\n`
  },
  cursor: {
    scope: 'project',
    text: `${JSON.stringify({ mcpServers: { playwright: { command: 'npx', args: ['-y', '@playwright/mcp@latest'] } } }, null, 2)}\n`
  },
  codex: {
    scope: 'user',
    text: [
      '# Codex settings, edited by hand',
      'model = "o3"',
      'approval_policy = "on-request"',
      '',
      '[mcp_servers.docs]',
      'command = "docs-mcp" # the docs server',
      'args = ["--stdio"]',
      '',
      '[mcp_servers.docs.env]',
      'DOCS_TOKEN_FILE = "~/.docs-token"',
      '',
      '[profiles.fast]',
      'model = "o4-mini"',
      ''
    ].join('\n')
  },
  vscode: {
    scope: 'project',
    text: [
      '{',
      '  // Servers for this workspace',
      '  "servers": {',
      '    "github": { "type": "http", "url": "https://api.githubcopilot.com/mcp/" },',
      '  },',
      '  "inputs": [',
      '    { "type": "promptString", "id": "gh-token", "description": "GitHub token", "password": true }',
      '  ]',
      '}',
      ''
    ].join('\n')
  },
  windsurf: {
    scope: 'user',
    text: `${JSON.stringify({ mcpServers: { context7: { serverUrl: 'https://mcp.context7.com/mcp' } } }, null, 2)}\n`
  },
  gemini: {
    scope: 'project',
    text: `${JSON.stringify({ theme: 'GitHub', selectedAuthType: 'gemini-api-key', mcpServers: { git: { command: 'uvx', args: ['mcp-server-git'] } } }, null, 4)}\n`
  }
}

async function places(t: TestContext): Promise<AgentPlaces> {
  const root = await mkdtemp(join(tmpdir(), 'sage-mcp-install-'))
  t.after(() => rm(root, { recursive: true, force: true }))
  const cwd = join(root, 'project')
  const home = join(root, 'home')
  await mkdir(cwd, { recursive: true })
  await mkdir(home)
  return { cwd, home, env: {} }
}

async function writeExisting(path: string, text: string): Promise<void> {
  await mkdir(dirname(path), { recursive: true })
  await writeFile(path, text)
}

const parsed = (format: 'json' | 'toml', text: string) => JSON.parse(JSON.stringify(format === 'toml' ? parseToml(text) : parseJsonc(text)))
const backups = async (path: string) => (await readdir(dirname(path))).filter((name) => name.includes('.bak-'))

for (const agent of MCP_AGENTS) {
  const { scope, text: original } = EXISTING[agent.id]!

  test(`${agent.name}: install merges Sage into an existing file, keeps every other byte, backs up, and uninstall restores it exactly`, async (t) => {
    const where = await places(t)
    const path = mcpSettingsPath(agent, scope, where)
    await writeExisting(path, original)
    await chmod(path, 0o600)

    const installed = await installMcp(agent, scope, where, KEYED)
    assert.equal(installed.changed, true)
    assert.equal(await readFile(installed.backupPath!, 'utf8'), original)
    const text = await readFile(path, 'utf8')
    const before = parsed(agent.format, original)
    const after = parsed(agent.format, text)
    const [container, name] = agent.entryPath(scope, where) as [string, string]
    assert.deepEqual(after[container][name], agent.entry(KEYED))
    // Everything else is as it was.
    delete after[container][name]
    if (agent.input) after.inputs = after.inputs.filter((input: { id: string }) => input.id !== agent.input!.id)
    assert.deepEqual(after, before)
    if (agent.id === 'vscode') {
      assert.match(text, /\/\/ Servers for this workspace/)
      assert.deepEqual(parsed('json', text).inputs.at(-1), agent.input!.entry)
    }
    if (agent.id === 'codex') assert.match(text, /^# Codex settings, edited by hand\n[\s\S]*command = "docs-mcp" # the docs server\n/)
    assert.equal((await stat(path)).mode & 0o777, 0o600)

    const again = await installMcp(agent, scope, where, KEYED)
    assert.deepEqual(again, { path, changed: false })
    assert.equal(await readFile(path, 'utf8'), text)
    assert.equal((await backups(path)).length, 1)

    // A new address replaces Sage's entry in place: still one.
    const moved = await installMcp(agent, scope, where, { url: 'http://10.1.2.3:8765/mcp' })
    assert.equal(moved.changed, true)
    const movedData = parsed(agent.format, await readFile(path, 'utf8'))
    assert.deepEqual(movedData[container][name], agent.entry({ url: 'http://10.1.2.3:8765/mcp' }))
    if (agent.input) assert.equal(movedData.inputs.some((input: { id: string }) => input.id === agent.input!.id), false, 'no key, no prompt for one')

    const removed = await uninstallMcp(agent, scope, where)
    assert.equal(removed.changed, true)
    assert.equal(await readFile(path, 'utf8'), original)
    assert.deepEqual(await uninstallMcp(agent, scope, where), { path, changed: false })
  })

  test(`${agent.name}: a server named "sage" that Sage did not write is never touched`, async (t) => {
    const where = await places(t)
    const path = mcpSettingsPath(agent, scope, where)
    const foreign = agent.format === 'toml'
      ? `[mcp_servers.sage]\ncommand = "sage-accounting-mcp"\n`
      : JSON.stringify({ [agent.entryPath(scope, where)[0]!]: { sage: { command: 'sage-accounting-mcp', args: ['--ledger'] } } })
    await writeExisting(path, foreign)
    await assert.rejects(installMcp(agent, scope, where, KEYED), /already has an MCP server named "sage" that Sage did not write.*nothing was changed/)
    await assert.rejects(uninstallMcp(agent, scope, where), /that Sage did not write/)
    assert.equal(await readFile(path, 'utf8'), foreign)
    assert.deepEqual(await backups(path), [])
  })
}

test('a missing file is created whole, and removed again when Sage was all it held; one it did not create stays', async (t) => {
  const where = await places(t)
  const backups = { dir: join(where.home, 'backups') }
  for (const agent of MCP_AGENTS) {
    const scope = agent.defaultScope
    const path = mcpSettingsPath(agent, scope, where)
    const result = await installMcp(agent, scope, where, KEYED, backups)
    assert.deepEqual(result, { path, changed: true })
    const data = parsed(agent.format, await readFile(path, 'utf8'))
    assert.deepEqual(data[agent.entryPath(scope, where)[0]!].sage, agent.entry(KEYED))
    const removed = await uninstallMcp(agent, scope, where, backups)
    assert.equal(removed.removedFile, true, agent.id)
    await assert.rejects(stat(path), { code: 'ENOENT' })
  }
  // Written by hand (or by an older install): emptied, not deleted.
  const agent = mcpAgent('cursor')
  const path = mcpSettingsPath(agent, 'project', where)
  await writeExisting(path, JSON.stringify({ mcpServers: { sage: { url: URL_ } } }))
  const removed = await uninstallMcp(agent, 'project', where, backups)
  assert.equal(removed.removedFile, undefined)
  assert.deepEqual(JSON.parse(await readFile(path, 'utf8')), {})
  assert.ok(removed.backupPath?.startsWith(backups.dir))
})

test('Claude Code: user scope is the top-level mcpServers of ~/.claude.json, local scope the project\'s record in it', async (t) => {
  const where = await places(t)
  const agent = mcpAgent('claude-code')
  const path = join(where.home, '.claude.json')
  const original = `${JSON.stringify({ numStartups: 12, projects: { [where.cwd]: { allowedTools: [], mcpServers: {} }, '/elsewhere': { mcpServers: { x: { command: 'x' } } } }, mcpServers: { fs: { type: 'stdio', command: 'fs-mcp', args: [] } } }, null, 2)}\n`
  await writeFile(path, original)

  await installMcp(agent, 'user', where, KEYED)
  await installMcp(agent, 'local', where, { url: `${URL_}?namespace=mine` })
  const data = JSON.parse(await readFile(path, 'utf8'))
  assert.deepEqual(data.mcpServers.sage, { type: 'http', url: URL_, headers: { Authorization: 'Bearer ${SAGE_API_KEY}' } })
  assert.deepEqual(data.projects[where.cwd].mcpServers.sage, { type: 'http', url: `${URL_}?namespace=mine` })
  assert.deepEqual(data.projects['/elsewhere'], { mcpServers: { x: { command: 'x' } } })
  assert.equal(data.numStartups, 12)

  await uninstallMcp(agent, 'local', where)
  await uninstallMcp(agent, 'user', where)
  // The project's own record keeps its (empty) servers object: Claude Code made it, not Sage.
  assert.equal(await readFile(path, 'utf8'), original)

  // CLAUDE_CONFIG_DIR moves the file.
  assert.equal(mcpSettingsPath(agent, 'user', { ...where, env: { CLAUDE_CONFIG_DIR: '/cfg' } }), '/cfg/.claude.json')
})

test('Codex: CODEX_HOME moves the file; a stdio entry and its env table are written and removed together; forms it cannot edit are refused', async (t) => {
  const where = await places(t)
  const agent = mcpAgent('codex')
  assert.equal(mcpSettingsPath(agent, 'user', { ...where, env: { CODEX_HOME: '/codex' } }), '/codex/config.toml')
  const path = mcpSettingsPath(agent, 'user', where)
  const original = EXISTING.codex!.text
  await writeExisting(path, original)
  const stdio = { url: URL_, stdio: { command: '/usr/bin/node', args: ['/opt/sage/dist/src/cli.js', 'mcp'], sageUrl: 'http://127.0.0.1:8765' } }
  await installMcp(agent, 'user', where, stdio)
  const text = await readFile(path, 'utf8')
  assert.match(text, /\n\[mcp_servers\.sage\]\ncommand = "\/usr\/bin\/node"\nargs = \[ "\/opt\/sage\/dist\/src\/cli.js", "mcp" \]\n\n\[mcp_servers\.sage\.env\]\nSAGE_URL = "http:\/\/127\.0\.0\.1:8765"\n$/)
  await uninstallMcp(agent, 'user', where)
  assert.equal(await readFile(path, 'utf8'), original)

  assert.throws(() => agent.entry({ ...stdio, apiKeyEnv: 'SAGE_API_KEY' }), /cannot pass a key to a stdio server by reference/)

  // Sage's table where a user moved it, between two others: it goes, and the two stay a blank line apart.
  await writeFile(path, 'model = "o3"\n\n[mcp_servers.sage]\nurl = "http://127.0.0.1:8765/mcp"\n\n[profiles.fast]\nmodel = "o4-mini"\n')
  await uninstallMcp(agent, 'user', where)
  assert.equal(await readFile(path, 'utf8'), 'model = "o3"\n\n[profiles.fast]\nmodel = "o4-mini"\n')

  for (const form of ['mcp_servers.sage.url = "http://127.0.0.1:8765/mcp"\n', 'mcp_servers = { sage = { url = "http://127.0.0.1:8765/mcp" } }\n']) {
    await writeFile(path, form)
    await assert.rejects(installMcp(agent, 'user', where, KEYED), /in a form Sage cannot edit safely[\s\S]*\[mcp_servers\.sage\]\nurl = "http:\/\/127\.0\.0\.1:8765\/mcp"\nbearer_token_env_var = "SAGE_API_KEY"/)
    await assert.rejects(uninstallMcp(agent, 'user', where), /remove it by hand/)
    assert.equal(await readFile(path, 'utf8'), form)
  }
  await writeFile(path, 'model = "o3\n')
  await assert.rejects(installMcp(agent, 'user', where, KEYED), /is not valid TOML .*nothing was changed/)
})

test('a settings file that is a symbolic link is written through it, not replaced', async (t) => {
  const where = await places(t)
  const agent = mcpAgent('cursor')
  const real = join(where.home, 'dotfiles', 'cursor-mcp.json')
  await writeExisting(real, EXISTING.cursor!.text)
  const path = mcpSettingsPath(agent, 'project', where)
  await mkdir(dirname(path), { recursive: true })
  await symlink(real, path)
  const result = await installMcp(agent, 'project', where, KEYED)
  assert.equal(result.path, real)
  assert.equal(JSON.parse(await readFile(real, 'utf8')).mcpServers.sage.url, URL_)
  assert.ok((await stat(path)).isFile())
  await uninstallMcp(agent, 'project', where)
  assert.equal(await readFile(real, 'utf8'), EXISTING.cursor!.text)
})

test('isSageEntry knows Sage\'s entries by their /mcp URL or their `sage-memory mcp` command', () => {
  for (const agent of MCP_AGENTS) {
    assert.ok(isSageEntry(agent.entry({ url: URL_ })), agent.id)
    if (agent.id !== 'codex') assert.ok(isSageEntry(agent.entry({ url: URL_, stdio: { command: '/usr/bin/node', args: ['/x/dist/src/cli.js', 'mcp'], sageUrl: 'http://x' } })), agent.id)
  }
  assert.ok(isSageEntry({ command: 'sage-memory', args: ['mcp', '--namespace', 'x'] }))
  for (const other of [{ command: 'sage', args: ['serve'] }, { url: 'https://sage.example.com/api' }, { serverUrl: 'not a url' }, null, 'sage', []]) {
    assert.equal(isSageEntry(other), false, JSON.stringify(other))
  }
})
