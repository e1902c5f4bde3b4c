import assert from 'node:assert/strict'
import { execFile, spawn } from 'node:child_process'
import { once } from 'node:events'
import { copyFile, mkdir, mkdtemp, rm, symlink } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { test } from 'node:test'
import { promisify } from 'node:util'
import { REPO_ROOT } from '../../helper.js'
import { callTool, mcpClient } from '../../support/mcp-client.js'
import { freePort } from '../../support/sage-process.js'
import { waitFor } from '../../support/wait-for.js'

const run = promisify(execFile)

/**
 * A clean clone of this checkout after `npm ci`: the files git has (committed or not, ignored ones left out, so
 * no dist/ and no .data/), and the installed packages. Its own build leaves the one the other tests run alone.
 */
async function cleanClone(): Promise<string> {
  const clone = await mkdtemp(join(tmpdir(), 'sage-clone-'))
  const { stdout } = await run('git', ['ls-files', '--cached', '--others', '--exclude-standard', '-z'], { cwd: REPO_ROOT, maxBuffer: 64 * 1024 * 1024 })
  for (const file of stdout.split('\0').filter(Boolean)) {
    await mkdir(dirname(join(clone, file)), { recursive: true })
    // A file deleted in the working tree but not yet in git is not part of the clone.
    await copyFile(join(REPO_ROOT, file), join(clone, file)).catch((error: NodeJS.ErrnoException) => {
      if (error.code !== 'ENOENT') throw error
    })
  }
  await symlink(join(REPO_ROOT, 'node_modules'), join(clone, 'node_modules'))
  return clone
}

test('from a clean clone: npm start, then an MCP client remembers a fact and a recall through MCP finds it first', { timeout: 300_000 }, async (t) => {
  const clone = await cleanClone()
  t.after(() => rm(clone, { recursive: true, force: true }))
  const port = await freePort()
  // Nothing configured but where to listen: the embedded store in the user's data folder (the clone's, here), the built-in embedder.
  const npm = spawn('npm', ['start'], {
    cwd: clone,
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? clone, XDG_DATA_HOME: join(clone, 'data-home'), PORT: String(port), LOG_LEVEL: 'warn' },
    stdio: ['ignore', 'pipe', 'pipe'],
    // Its own process group, so the build and the service it starts stop with it.
    detached: true
  })
  let output = ''
  npm.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()))
  npm.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()))
  const exited = once(npm, 'exit')
  t.after(async () => {
    if (npm.exitCode === null && npm.signalCode === null) process.kill(-npm.pid!, 'SIGTERM')
    await exited
  })
  const url = `http://127.0.0.1:${port}`
  await waitFor(`npm start to serve on ${url}`, async () => {
    if (npm.exitCode !== null) throw new Error(`npm start exited ${npm.exitCode}:\n${output}`)
    return fetch(`${url}/health`).then((res) => res.ok, () => false)
  }, 240_000, 250)

  const client = await mcpClient(t, `${url}/mcp`)
  for (const content of [
    'The staging database is refreshed from production every Sunday night.',
    'Frontend builds use Vite; the legacy webpack config is kept only for the admin app.',
    'On-call rotates every Monday at 10:00; the schedule lives in PagerDuty.'
  ]) {
    assert.equal((await callTool(client, 'remember', { content })).structuredContent!.created, true)
  }
  const fact = await callTool(client, 'remember', { content: 'We pinned pnpm to version 9 because pnpm 10 broke the workspace hoisting.', tags: ['decision'] })
  const id = fact.structuredContent!.id as string

  const recalled = await callTool(client, 'recall', { query: 'why is pnpm pinned to 9?' })
  assert.equal(recalled.isError, undefined)
  assert.equal(recalled.structuredContent!.results[0].id, id, JSON.stringify(recalled.structuredContent!.results.map((hit: { content: string; score: number }) => [hit.score, hit.content])))
  assert.match(recalled.structuredContent!.context, /^Relevant memories[\s\S]*\n- \[\d{4}-\d\d-\d\d note #decision\] We pinned pnpm to version 9/)
})
