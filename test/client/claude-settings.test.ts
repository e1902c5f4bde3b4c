import assert from 'node:assert/strict'
import { execFile, spawn } from 'node:child_process'
import { chmod, mkdir, mkdtemp, readdir, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises'
import { createServer, type IncomingMessage } from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { test, type TestContext } from 'node:test'
import { promisify } from 'node:util'
import {
  buildSageHooks,
  installHooks,
  readSageHooks,
  isSageHook,
  SAGE_HOOK_EVENTS,
  settingsPathFor,
  uninstallHooks,
  type CommandHook
} from '../../src/client/claude-settings.js'

const BASE = 'http://127.0.0.1:8765'

// A settings file as a user has it: other keys, other hooks on the same events and on others.
const ORIGINAL = {
  $schema: 'https://json.schemastore.org/claude-code-settings.json',
  model: 'sonnet',
  permissions: { allow: ['Bash(npm test:*)'], deny: [] },
  hooks: {
    Stop: [{ hooks: [{ type: 'command', command: 'notify-send done', timeout: 5 }] }],
    PreToolUse: [{ matcher: 'Bash', hooks: [{ type: 'command', command: './guard.sh' }] }],
    UserPromptSubmit: [{ matcher: '', hooks: [{ type: 'http', url: 'http://127.0.0.1:9000/other', timeout: 10 }] }]
  },
  env: { FOO: '1' }
}

async function tempDir(t: TestContext): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'sage-settings-'))
  t.after(() => rm(dir, { recursive: true, force: true }))
  return dir
}

async function readJson(path: string): Promise<unknown> {
  return JSON.parse(await readFile(path, 'utf8'))
}

async function writeOriginal(dir: string): Promise<string> {
  const path = join(dir, 'settings.json')
  await writeFile(path, `${JSON.stringify(ORIGINAL, null, 2)}\n`)
  return path
}

function sageEntries(settings: unknown): Array<[string, unknown]> {
  const hooks = (settings as { hooks?: Record<string, Array<{ hooks: unknown[] }>> }).hooks ?? {}
  return Object.entries(hooks).flatMap(([event, groups]) =>
    groups.flatMap((group) => group.hooks.filter(isSageHook).map((entry): [string, unknown] => [event, entry]))
  )
}

test('buildSageHooks: http hooks to /hooks/claude-code, a curl command for SessionStart, namespace encoded', () => {
  const hooks = buildSageHooks({ baseUrl: 'http://127.0.0.1:8765/', namespace: 'team/billing@x' })
  const url = 'http://127.0.0.1:8765/hooks/claude-code?namespace=team%2Fbilling%40x'
  for (const event of ['UserPromptSubmit', 'Stop', 'SubagentStop', 'PostCompact'] as const) {
    assert.deepEqual(hooks[event], [{ hooks: [{ type: 'http', url, timeout: 3 }] }])
  }
  assert.deepEqual(hooks.SessionStart, [
    {
      hooks: [
        {
          type: 'command',
          command:
            `out=$(curl -sSf --max-time 2 -X POST -H 'Content-Type: application/json' --data-binary @- '${url}' 2>&1) || ` +
            `{ echo 'Sage at ${url} failed, nothing was saved or recalled (sage-memory doctor says why): '"$out" >&2; exit 1; }; printf '%s' "$out"`,
          timeout: 3
        }
      ]
    }
  ])
  assert.deepEqual(Object.keys(hooks).sort(), [...SAGE_HOOK_EVENTS].sort())
})

test('buildSageHooks: with a key variable every event uses curl, which expands it; a base path is kept', () => {
  const hooks = buildSageHooks({ baseUrl: 'https://sage.example/base', apiKeyEnv: 'SAGE_API_KEY', timeoutSeconds: 10 })
  for (const event of SAGE_HOOK_EVENTS) {
    const [group] = hooks[event]
    assert.deepEqual(group.hooks[0], {
      type: 'command',
      command:
        `[ -n "$SAGE_API_KEY" ] || { echo 'Sage: SAGE_API_KEY is not set where Claude Code runs; nothing was saved or recalled' >&2; exit 1; }; ` +
        `out=$(curl -sSf --max-time 9 -X POST -H 'Content-Type: application/json' -H "Authorization: Bearer $SAGE_API_KEY" ` +
        `--data-binary @- 'https://sage.example/base/hooks/claude-code' 2>&1) || ` +
        `{ echo 'Sage at https://sage.example/base/hooks/claude-code failed, nothing was saved or recalled (sage-memory doctor says why): '"$out" >&2; exit 1; }; ` +
        `printf '%s' "$out"`,
      timeout: 10
    })
  }
})

test('buildSageHooks refuses what would install a hook that can never work', () => {
  assert.throws(() => buildSageHooks({ baseUrl: 'not a url' }), /baseUrl/)
  assert.throws(() => buildSageHooks({ baseUrl: 'file:///tmp/x' }), /baseUrl/)
  assert.throws(() => buildSageHooks({ baseUrl: BASE, apiKeyEnv: 'KEY; rm -rf ~' }), /apiKeyEnv/)
  assert.throws(() => buildSageHooks({ baseUrl: BASE, namespace: 'has space' }), /namespace/)
  assert.throws(() => buildSageHooks({ baseUrl: BASE, timeoutSeconds: 0 }), RangeError)
  assert.throws(() => buildSageHooks({ baseUrl: BASE, timeoutSeconds: 1.5 }), RangeError)
})

test('isSageHook recognises entries by the hook route, nothing else', () => {
  assert.equal(isSageHook({ type: 'http', url: 'http://h:1/hooks/claude-code?namespace=a' }), true)
  assert.equal(isSageHook({ type: 'http', url: 'https://h/prefix/hooks/claude-code/' }), true)
  assert.equal(isSageHook({ type: 'command', command: "curl … 'http://h/hooks/claude-code' || true" }), true)
  assert.equal(isSageHook({ type: 'http', url: 'http://h/hooks/claude-code-other' }), false)
  assert.equal(isSageHook({ type: 'http', url: 'http://127.0.0.1:9000/other' }), false)
  assert.equal(isSageHook({ type: 'command', command: './guard.sh' }), false)
  assert.equal(isSageHook({ type: 'http', url: 'not a url /hooks/claude-code' }), false)
  assert.equal(isSageHook(null), false)
})

test('install keeps every other key and hook, backs the file up, and adds one Sage hook per event', async (t) => {
  const dir = await tempDir(t)
  const path = await writeOriginal(dir)
  const before = await readFile(path, 'utf8')

  const result = await installHooks(path, { baseUrl: BASE })
  assert.equal(result.changed, true)
  assert.deepEqual([...result.added].sort(), [...SAGE_HOOK_EVENTS].sort())
  assert.ok(result.backupPath !== undefined && result.backupPath.startsWith(`${path}.bak-`))
  assert.equal(await readFile(result.backupPath, 'utf8'), before)

  const after = (await readJson(path)) as typeof ORIGINAL & { hooks: Record<string, unknown[]> }
  const { hooks: beforeHooks, ...beforeRest } = ORIGINAL
  const { hooks: afterHooks, ...afterRest } = after
  assert.deepEqual(afterRest, beforeRest)
  // The user's own groups come first, untouched; Sage's group is appended after them.
  for (const [event, groups] of Object.entries(beforeHooks)) {
    assert.deepEqual(afterHooks[event]?.slice(0, groups.length), groups)
  }
  assert.deepEqual(afterHooks.PreToolUse, beforeHooks.PreToolUse)
  const wanted = buildSageHooks({ baseUrl: BASE })
  for (const event of SAGE_HOOK_EVENTS) assert.deepEqual(afterHooks[event]?.at(-1), wanted[event][0])
  assert.equal(sageEntries(after).length, SAGE_HOOK_EVENTS.length)
  assert.match(await readFile(path, 'utf8'), /^\{\n {2}"\$schema"/)
})

test('installing twice changes nothing and writes no second backup', async (t) => {
  const dir = await tempDir(t)
  const path = await writeOriginal(dir)
  await installHooks(path, { baseUrl: BASE, namespace: 'billing' })
  const once = await readFile(path, 'utf8')
  const filesOnce = await readdir(dir)

  const again = await installHooks(path, { baseUrl: BASE, namespace: 'billing' })
  assert.deepEqual(again, { changed: false, added: [], created: false })
  assert.equal(await readFile(path, 'utf8'), once)
  assert.deepEqual(await readdir(dir), filesOnce)
})

test('reinstalling with another address or key replaces Sage entries in place, never duplicates them', async (t) => {
  const dir = await tempDir(t)
  const path = await writeOriginal(dir)
  await installHooks(path, { baseUrl: BASE })
  const first = (await readJson(path)) as { hooks: Record<string, unknown[]> }

  const result = await installHooks(path, { baseUrl: 'https://sage.team.example', apiKeyEnv: 'SAGE_API_KEY' })
  assert.equal(result.changed, true)
  assert.deepEqual([...result.added].sort(), [...SAGE_HOOK_EVENTS].sort())
  const second = (await readJson(path)) as { hooks: Record<string, unknown[]> }
  const entries = sageEntries(second)
  assert.equal(entries.length, SAGE_HOOK_EVENTS.length)
  for (const [, entry] of entries) assert.match((entry as CommandHook).command, /sage\.team\.example.*printf '%s' "\$out"$/)
  for (const event of Object.keys(first.hooks)) assert.equal(second.hooks[event]?.length, first.hooks[event]?.length)
})

test('a Sage hook the user moved into their own group is replaced there, leaving the group as it was', async (t) => {
  const dir = await tempDir(t)
  const path = join(dir, 'settings.json')
  const mine = { type: 'command', command: 'log-prompt' }
  const stale = { type: 'http', url: 'http://old-host:1/hooks/claude-code', timeout: 30 }
  await writeFile(path, JSON.stringify({ hooks: { UserPromptSubmit: [{ matcher: '', hooks: [mine, stale] }] } }))

  await installHooks(path, { baseUrl: BASE })
  const after = (await readJson(path)) as { hooks: Record<string, unknown[]> }
  assert.deepEqual(after.hooks.UserPromptSubmit, [
    { matcher: '', hooks: [mine, buildSageHooks({ baseUrl: BASE }).UserPromptSubmit[0].hooks[0]] }
  ])
})

test('uninstall restores the original settings, and a second uninstall changes nothing', async (t) => {
  const dir = await tempDir(t)
  const path = await writeOriginal(dir)
  await installHooks(path, { baseUrl: BASE, apiKeyEnv: 'SAGE_API_KEY' })

  const result = await uninstallHooks(path)
  assert.equal(result.changed, true)
  assert.deepEqual([...result.removed].sort(), [...SAGE_HOOK_EVENTS].sort())
  assert.deepEqual(await readJson(path), ORIGINAL)

  const filesAfter = await readdir(dir)
  assert.deepEqual(await uninstallHooks(path), { changed: false, removed: [], deletedFile: false })
  assert.deepEqual(await readdir(dir), filesAfter)
})

test('install creates a missing file and folders; uninstall then leaves no empty hooks behind', async (t) => {
  const dir = await tempDir(t)
  const path = settingsPathFor('project', join(dir, 'repo'), join(dir, 'home'))
  const result = await installHooks(path, { baseUrl: BASE })
  assert.equal(result.changed, true)
  assert.equal(result.backupPath, undefined)
  assert.deepEqual(Object.keys(((await readJson(path)) as { hooks: object }).hooks).sort(), [...SAGE_HOOK_EVENTS].sort())

  await uninstallHooks(path)
  assert.deepEqual(await readJson(path), {})
  assert.deepEqual(await uninstallHooks(join(dir, 'nowhere.json')), { changed: false, removed: [], deletedFile: false })
})

test('with a backup folder, backups stay out of the project and do not pile up; uninstall deletes a file install created', async (t) => {
  const dir = await tempDir(t)
  const backups = { dir: join(dir, 'data', 'backups') }
  await mkdir(join(dir, 'project'))
  const path = await writeOriginal(join(dir, 'project'))
  for (let n = 0; n < 8; n++) {
    // Each run changes the file (another timeout), so each makes a backup.
    const result = await installHooks(path, { baseUrl: BASE, timeoutSeconds: n + 1 }, backups)
    assert.ok(result.backupPath?.startsWith(backups.dir), result.backupPath)
  }
  assert.deepEqual((await readdir(dirname(path))).sort(), ['settings.json'], 'nothing next to the file')
  assert.equal((await readdir(backups.dir)).filter((name) => name.includes('.bak-')).length, 5)
  // A file the user had keeps existing after uninstall, as it was.
  assert.equal((await uninstallHooks(path, backups)).deletedFile, false)
  assert.deepEqual(await readJson(path), ORIGINAL)

  const created = settingsPathFor('local', join(dir, 'repo'), join(dir, 'home'))
  assert.equal((await installHooks(created, { baseUrl: BASE }, backups)).created, true)
  assert.equal((await uninstallHooks(created, backups)).deletedFile, true)
  await assert.rejects(stat(created), { code: 'ENOENT' })
  // Created, then given a setting of the user's own: uninstall keeps the file and that setting.
  await installHooks(created, { baseUrl: BASE }, backups)
  await writeFile(created, JSON.stringify({ ...(await readJson(created) as object), model: 'opus' }))
  assert.equal((await uninstallHooks(created, backups)).deletedFile, false)
  assert.deepEqual(await readJson(created), { model: 'opus' })
})

test('readSageHooks finds Sage\'s entries, their URL and key variable, in any event', async (t) => {
  const dir = await tempDir(t)
  const path = await writeOriginal(dir)
  await installHooks(path, { baseUrl: BASE, apiKeyEnv: 'MY_KEY' })
  const found = await readSageHooks(path)
  assert.deepEqual(found.map((f) => f.event).sort(), [...SAGE_HOOK_EVENTS].sort())
  for (const hook of found) assert.deepEqual([hook.type, hook.url, hook.keyEnv], ['command', `${BASE}/hooks/claude-code`, 'MY_KEY'])
  assert.deepEqual(await readSageHooks(join(dir, 'missing.json')), [])
})

test('a file that is not valid JSON, or not an object, is refused and left untouched', async (t) => {
  const dir = await tempDir(t)
  const cases = ['{ "hooks": { , }', '// comment\n{}', '[1, 2]', '{"hooks": []}', '{"hooks": {"Stop": {"hooks": []}}}']
  for (const [index, text] of cases.entries()) {
    const path = join(dir, `settings-${index}.json`)
    await writeFile(path, text)
    await assert.rejects(installHooks(path, { baseUrl: BASE }), /nothing was changed/)
    await assert.rejects(uninstallHooks(path), /nothing was changed/)
    assert.equal(await readFile(path, 'utf8'), text)
  }
  assert.equal((await readdir(dir)).length, cases.length)
})

test('install writes through a symbolic link and keeps the file mode', async (t) => {
  const dir = await tempDir(t)
  const real = await writeOriginal(dir)
  await chmod(real, 0o600)
  await mkdir(join(dir, 'home', '.claude'), { recursive: true })
  const link = settingsPathFor('user', join(dir, 'repo'), join(dir, 'home'))
  await symlink(real, link)

  await installHooks(link, { baseUrl: BASE })
  assert.equal((await stat(link)).isFile(), true)
  assert.equal(sageEntries(await readJson(real)).length, SAGE_HOOK_EVENTS.length)
  assert.equal((await stat(real)).mode & 0o777, 0o600)
  assert.equal((await readdir(join(dir, 'home', '.claude'))).length, 1)
})

test('settingsPathFor', () => {
  assert.equal(settingsPathFor('project', '/src/app', '/home/u'), join('/src/app', '.claude', 'settings.json'))
  assert.equal(settingsPathFor('local', '/src/app', '/home/u'), join('/src/app', '.claude', 'settings.local.json'))
  assert.equal(settingsPathFor('user', '/src/app', '/home/u'), join('/home/u', '.claude', 'settings.json'))
})

// The generated command run by a real shell, as Claude Code runs it, against a loopback server.
const hasCurl = await promisify(execFile)('curl', ['--version']).then(
  () => true,
  () => false
)

function runHook(command: string, stdin: string, env: Record<string, string>): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn('sh', ['-c', command], { env: { PATH: process.env.PATH ?? '', ...env }, stdio: ['pipe', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()))
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()))
    child.on('error', reject)
    child.on('close', (code) => resolve({ code, stdout, stderr }))
    // A command that stops before reading its input (no key) closes the pipe: EPIPE here is not the test's failure.
    child.stdin.on('error', () => undefined)
    child.stdin.end(stdin)
  })
}

test('the curl command posts stdin with the key and prints the answer; a failure is one line on stderr and exit 1, never 2', { skip: !hasCurl && 'curl is not installed' }, async (t) => {
  let status = 200
  const seen: Array<{ url?: string; auth?: string; type?: string; body: string }> = []
  const server = createServer((request: IncomingMessage, response) => {
    let body = ''
    request.on('data', (chunk: Buffer) => (body += chunk.toString()))
    request.on('end', () => {
      seen.push({ url: request.url, auth: request.headers.authorization, type: request.headers['content-type'], body })
      response.writeHead(status, { 'content-type': 'application/json' })
      response.end(status === 200 ? '{"hookSpecificOutput":{"hookEventName":"SessionStart","additionalContext":"hi"}}' : '{"statusCode":401}')
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.after(() => new Promise<void>((resolve) => server.close(() => resolve())))
  const { port } = server.address() as AddressInfo
  const payload = JSON.stringify({ hook_event_name: 'SessionStart', cwd: "/home/o'brien/src", source: 'startup' })
  const hook = (baseUrl: string): string =>
    buildSageHooks({ baseUrl, apiKeyEnv: 'SAGE_API_KEY', namespace: 'team/x' }).SessionStart[0].hooks[0].command

  const ok = await runHook(hook(`http://127.0.0.1:${port}`), payload, { SAGE_API_KEY: 'k-123' })
  assert.deepEqual(ok, { code: 0, stdout: '{"hookSpecificOutput":{"hookEventName":"SessionStart","additionalContext":"hi"}}', stderr: '' })
  assert.deepEqual(seen, [
    { url: '/hooks/claude-code?namespace=team%2Fx', auth: 'Bearer k-123', type: 'application/json', body: payload }
  ])

  // Claude Code shows a hook's stderr to the user on any exit but 0 and 2; 2 would block the prompt.
  const missing = await runHook(hook(`http://127.0.0.1:${port}`), payload, {})
  assert.equal(missing.code, 1)
  assert.equal(missing.stdout, '')
  assert.match(missing.stderr, /^Sage: SAGE_API_KEY is not set where Claude Code runs/)
  assert.equal(seen.length, 1, 'no call without the key')

  status = 401
  const refused = await runHook(hook(`http://127.0.0.1:${port}`), payload, { SAGE_API_KEY: 'wrong' })
  assert.equal(refused.code, 1)
  assert.equal(refused.stdout, '')
  assert.match(refused.stderr, /^Sage at http:\/\/127\.0\.0\.1:\d+\/hooks\/claude-code\?namespace=team%2Fx failed.*401/)

  const closed = createServer()
  await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve))
  const deadPort = (closed.address() as AddressInfo).port
  await new Promise<void>((resolve) => closed.close(() => resolve()))
  const unreachable = await runHook(hook(`http://127.0.0.1:${deadPort}`), payload, { SAGE_API_KEY: 'k' })
  assert.equal(unreachable.code, 1)
  assert.equal(unreachable.stdout, '')
  assert.match(unreachable.stderr, /^Sage at .* failed, nothing was saved or recalled .*(Failed to connect|Couldn't connect)/)
})
