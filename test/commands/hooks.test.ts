import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { test, type TestContext } from 'node:test'
import { promisify } from 'node:util'
import { isSageHook, SAGE_HOOK_EVENTS } from '../../src/hooks/claude-settings.js'
import { REPO_ROOT } from '../helper.js'

const run = promisify(execFile)
const CLI = join(REPO_ROOT, 'dist/src/cli.js')

/** A project's settings as a user has them: other keys, other hooks on Sage's events and on others. */
const ORIGINAL = {
  model: 'sonnet',
  hooks: {
    Stop: [{ hooks: [{ type: 'command', command: 'notify-send done', timeout: 5 }] }],
    PreToolUse: [{ matcher: 'Bash', hooks: [{ type: 'command', command: './guard.sh' }] }],
    UserPromptSubmit: [{ hooks: [{ type: 'http', url: 'http://127.0.0.1:9000/other', timeout: 10 }] }]
  }
}

async function sandbox(t: TestContext): Promise<{ project: string; home: string }> {
  const root = await mkdtemp(join(tmpdir(), 'sage-hooks-cli-'))
  t.after(() => rm(root, { recursive: true, force: true }))
  const project = join(root, 'project')
  const home = join(root, 'home')
  await mkdir(join(project, '.claude'), { recursive: true })
  await mkdir(home)
  return { project, home }
}

async function cli(args: string[], cwd: string, home: string, env: Record<string, string> = {}) {
  try {
    const { stdout, stderr } = await run(process.execPath, [CLI, ...args], { cwd, env: { PATH: process.env.PATH ?? '', HOME: home, ...env } })
    return { code: 0, stdout, stderr }
  } catch (error) {
    const failed = error as { code: number; stdout: string; stderr: string }
    return { code: failed.code, stdout: failed.stdout, stderr: failed.stderr }
  }
}

const readJson = async (path: string) => JSON.parse(await readFile(path, 'utf8')) as typeof ORIGINAL & { hooks: Record<string, Array<{ hooks: unknown[] }>> }

test('hooks install merges into existing settings, keeps the other hooks, backs up, and a second run changes nothing', async (t) => {
  const { project, home } = await sandbox(t)
  const path = join(project, '.claude', 'settings.json')
  await writeFile(path, `${JSON.stringify(ORIGINAL, null, 2)}\n`)

  const first = await cli(['hooks', 'install'], project, home)
  assert.equal(first.code, 0, first.stderr)
  assert.match(first.stdout, new RegExp(`Sage's hooks written to ${path.replace(/[.]/g, '\\.')}`))
  assert.match(first.stdout, /added or updated: SessionStart, UserPromptSubmit, Stop, SubagentStop, PostCompact/)
  const backup = /backup of the previous file: (\S+)/.exec(first.stdout)?.[1]
  assert.ok(backup, first.stdout)
  assert.deepEqual(JSON.parse(await readFile(backup, 'utf8')), ORIGINAL)

  const installed = await readJson(path)
  assert.equal(installed.model, 'sonnet')
  assert.deepEqual(installed.hooks.PreToolUse, ORIGINAL.hooks.PreToolUse)
  // The user's own hooks on Sage's events are still there, Sage's beside them.
  assert.deepEqual(installed.hooks.Stop![0], ORIGINAL.hooks.Stop[0])
  assert.deepEqual(installed.hooks.UserPromptSubmit![0], ORIGINAL.hooks.UserPromptSubmit[0])
  for (const event of SAGE_HOOK_EVENTS) {
    assert.equal(installed.hooks[event]!.flatMap((group) => group.hooks).filter(isSageHook).length, 1, event)
  }
  const text = await readFile(path, 'utf8')

  const second = await cli(['hooks', 'install'], project, home)
  assert.equal(second.code, 0)
  assert.match(second.stdout, /already in .*; nothing changed/)
  assert.equal(await readFile(path, 'utf8'), text)
  assert.equal((await readdir(join(project, '.claude'))).filter((name) => name.includes('.bak-')).length, 1)

  const removed = await cli(['hooks', 'uninstall'], project, home)
  assert.equal(removed.code, 0)
  assert.match(removed.stdout, /removed: /)
  assert.deepEqual(await readJson(path), ORIGINAL)
  assert.match((await cli(['hooks', 'uninstall'], project, home)).stdout, /No Sage hooks in .*; nothing changed/)
})

test('hooks install --user writes ~/.claude/settings.json; --key-env makes curl commands that send the key', async (t) => {
  const { project, home } = await sandbox(t)
  const result = await cli(['hooks', 'install', '--user', '--url', 'http://127.0.0.1:9999', '--key-env', 'SAGE_API_KEY', '--namespace', 'team/billing'], project, home)
  assert.equal(result.code, 0, result.stderr)
  assert.match(result.stdout, /note: SAGE_API_KEY is not set in this shell/)
  const settings = await readJson(join(home, '.claude', 'settings.json'))
  for (const event of SAGE_HOOK_EVENTS) {
    const [hook] = settings.hooks[event]![0]!.hooks as Array<{ type: string; command: string }>
    assert.equal(hook!.type, 'command')
    assert.match(hook!.command, /-H "Authorization: Bearer \$SAGE_API_KEY"/)
    assert.match(hook!.command, /'http:\/\/127\.0\.0\.1:9999\/hooks\/claude-code\?namespace=team%2Fbilling'/)
  }
  assert.deepEqual(await readdir(join(project, '.claude')), [])
})

test('hooks refuses what it cannot do, and says why', async (t) => {
  const { project, home } = await sandbox(t)
  const both = await cli(['hooks', 'install', '--user', '--local'], project, home)
  assert.equal(both.code, 1)
  assert.match(both.stderr, /choose one of --user and --local/)
  const badUrl = await cli(['hooks', 'install', '--url', 'not-a-url'], project, home)
  assert.equal(badUrl.code, 1)
  assert.match(badUrl.stderr, /baseUrl must be an http\(s\) URL/)
  await writeFile(join(project, '.claude', 'settings.local.json'), '{ not json')
  const broken = await cli(['hooks', 'install', '--local'], project, home)
  assert.equal(broken.code, 1)
  assert.match(broken.stderr, /is not valid JSON .*nothing was changed/)
  assert.equal(await readFile(join(project, '.claude', 'settings.local.json'), 'utf8'), '{ not json')
  assert.equal((await cli(['hooks', 'frobnicate'], project, home)).code, 1)
  assert.equal((await cli(['hooks'], project, home)).code, 2)
})
