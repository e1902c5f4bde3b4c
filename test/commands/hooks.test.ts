import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { AddressInfo } from 'node:net'
import { after, before, test, type TestContext } from 'node:test'
import { promisify } from 'node:util'
import type { FastifyInstance } from 'fastify'
import { isSageHook, SAGE_HOOK_EVENTS } from '../../src/client/claude-settings.js'
import { backends, buildTestApp, REPO_ROOT, type TestStore } from '../helper.js'

const run = promisify(execFile)
const CLI = join(REPO_ROOT, 'dist/src/cli.js')
const SECRET = 'hooks-cli-secret-0123456789abcdef'

/** A real Sage to install against: one open, one that requires a key. */
let store: TestStore
let open: FastifyInstance
let keyed: FastifyInstance
let OPEN_URL = ''
let KEYED_URL = ''
const listen = async (app: FastifyInstance) => {
  await app.listen({ port: 0, host: '127.0.0.1' })
  return `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`
}
before(async () => {
  store = await backends()[0]!.create()
  open = await buildTestApp(store.db)
  keyed = await buildTestApp(store.db, { SAGE_API_KEYS: `me:${SECRET}=*` })
  OPEN_URL = await listen(open)
  KEYED_URL = await listen(keyed)
})
after(async () => {
  await open?.close()
  await keyed?.close()
  await store?.drop()
})
const backupsOf = async (home: string) => (await readdir(join(home, '.local/share/sage-memory/settings-backups')).catch(() => [] as string[])).filter((n) => n.includes('.bak-'))

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
    const { stdout, stderr } = await run(process.execPath, [CLI, ...args], { cwd, env: { PATH: process.env.PATH ?? '', HOME: home, SAGE_URL: OPEN_URL, ...env } })
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
  assert.equal((await readdir(join(project, '.claude'))).filter((name) => name.includes('.bak-')).length, 0, 'no backup in the project')
  assert.equal((await backupsOf(home)).length, 1)

  const removed = await cli(['hooks', 'uninstall'], project, home)
  assert.equal(removed.code, 0)
  assert.match(removed.stdout, /removed: /)
  assert.deepEqual(await readJson(path), ORIGINAL)
  assert.match((await cli(['hooks', 'uninstall'], project, home)).stdout, /No Sage hooks in .*; nothing changed/)
})

test('hooks install --user writes ~/.claude/settings.json; --key-env makes curl commands that send the key', async (t) => {
  const { project, home } = await sandbox(t)
  const result = await cli(['hooks', 'install', '--user', '--url', KEYED_URL, '--key-env', 'SAGE_API_KEY', '--namespace', 'team/billing'], project, home)
  assert.equal(result.code, 0, result.stderr)
  assert.match(result.stdout, /note: SAGE_API_KEY is not set in this shell, so the key was not checked/)
  const settings = await readJson(join(home, '.claude', 'settings.json'))
  for (const event of SAGE_HOOK_EVENTS) {
    const [hook] = settings.hooks[event]![0]!.hooks as Array<{ type: string; command: string }>
    assert.equal(hook!.type, 'command')
    assert.match(hook!.command, /-H "Authorization: Bearer \$SAGE_API_KEY"/)
    assert.ok(hook!.command.includes(`'${KEYED_URL}/hooks/claude-code?namespace=team%2Fbilling'`), hook!.command)
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
  assert.match(badUrl.stderr, /--url must be an http\(s\) URL/)
  const badTimeout = await cli(['hooks', 'install', '--timeout', '0'], project, home)
  assert.equal(badTimeout.code, 1)
  assert.match(badTimeout.stderr, /--timeout must be a whole number of seconds from 1 to 600, got 0/)
  await writeFile(join(project, '.claude', 'settings.local.json'), '{ not json')
  const broken = await cli(['hooks', 'install', '--local'], project, home)
  assert.equal(broken.code, 1)
  assert.match(broken.stderr, /is not valid JSON .*nothing was changed/)
  assert.equal(await readFile(join(project, '.claude', 'settings.local.json'), 'utf8'), '{ not json')
  const unknown = await cli(['hooks', 'frobnicate'], project, home)
  assert.equal(unknown.code, 2)
  assert.match(unknown.stderr, /^sage-memory hooks: unknown action "frobnicate"; use install or uninstall\n\nUsage: sage-memory hooks install /)
  assert.equal((await cli(['hooks'], project, home)).code, 2)
  const typo = await cli(['hooks', 'install', '--namspace', 'x'], project, home)
  assert.equal(typo.code, 2)
  assert.match(typo.stderr, /^sage-memory hooks: unknown option --namspace\n\nUsage: /)
})

test('hooks install honours SAGE_URL, and refuses a URL where nothing answers unless told --no-check', async (t) => {
  const { project, home } = await sandbox(t)
  const path = join(project, '.claude', 'settings.json')
  const viaEnv = await cli(['hooks', 'install'], project, home, { SAGE_URL: KEYED_URL, SAGE_API_KEY: SECRET })
  assert.equal(viaEnv.code, 1, 'a Sage with keys needs --key-env')
  assert.match(viaEnv.stderr, /requires an API key: pass --key-env/)
  const withKey = await cli(['hooks', 'install', '--key-env', 'SAGE_API_KEY'], project, home, { SAGE_URL: KEYED_URL, SAGE_API_KEY: SECRET })
  assert.equal(withKey.code, 0, withKey.stderr)
  assert.match(withKey.stdout, new RegExp(`-> ${KEYED_URL}`))
  assert.match(withKey.stdout, /the key in SAGE_API_KEY is "me", scopes \*/)
  assert.ok((await readFile(path, 'utf8')).includes(`${KEYED_URL}/hooks/claude-code`))

  const wrong = await cli(['hooks', 'install', '--key-env', 'SAGE_API_KEY'], project, home, { SAGE_URL: KEYED_URL, SAGE_API_KEY: 'not-the-key-0123456789' })
  assert.equal(wrong.code, 1)
  assert.match(wrong.stderr, /does not accept the key in SAGE_API_KEY/)

  const before = await readFile(path, 'utf8')
  const nowhere = await cli(['hooks', 'install', '--url', 'http://127.0.0.1:9'], project, home)
  assert.equal(nowhere.code, 1)
  assert.match(nowhere.stderr, /Sage does not answer at http:\/\/127\.0\.0\.1:9: .*--url or SAGE_URL; --no-check installs anyway/)
  assert.equal(await readFile(path, 'utf8'), before, 'nothing written')
  const forced = await cli(['hooks', 'install', '--url', 'http://127.0.0.1:9', '--no-check'], project, home)
  assert.equal(forced.code, 0, forced.stderr)
})

test('hooks install warns when Sage is already installed at another level; uninstall deletes a file it created', async (t) => {
  const { project, home } = await sandbox(t)
  assert.equal((await cli(['hooks', 'install', '--user'], project, home)).code, 0)
  const local = await cli(['hooks', 'install', '--local'], project, home)
  assert.equal(local.code, 0, local.stderr)
  assert.match(local.stdout, /warning: Sage's hooks are also in .*\.claude\/settings\.json \(user\): each event would be saved and injected twice\. Remove one: sage-memory hooks uninstall --user/)
  const removed = await cli(['hooks', 'uninstall', '--local'], project, home)
  assert.match(removed.stdout, /was created by hooks install and holds nothing else: deleted/)
  assert.deepEqual(await readdir(join(project, '.claude')), [])
})

test('hooks install refuses a project that opted out in .sage.json, and says so', async (t) => {
  const { project, home } = await sandbox(t)
  await writeFile(join(project, '.sage.json'), '{"mode": "off"}')
  const refused = await cli(['hooks', 'install'], project, home)
  assert.equal(refused.code, 1)
  assert.match(refused.stderr, /this project opted out of Sage in .*\.sage\.json; nothing was installed/)
  assert.deepEqual(await readdir(join(project, '.claude')), [])
  await writeFile(join(project, '.sage.json'), '{"mode": "save-only"}')
  const saveOnly = await cli(['hooks', 'install'], project, home)
  assert.equal(saveOnly.code, 0, saveOnly.stderr)
  assert.match(saveOnly.stdout, /makes this project save-only: sessions are saved, nothing is injected/)
})
