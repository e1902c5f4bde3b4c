import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { test } from 'node:test'
import { REPO_ROOT } from '../../helper.js'
import { callTool, mcpClient } from '../../support/mcp-client.js'
import { freePort } from '../../support/sage-process.js'
import { waitFor } from '../../support/wait-for.js'

test('npm start, with nothing configured, then an MCP client remembers a fact and a recall through MCP finds it first', { timeout: 240_000 }, async (t) => {
  const dataDir = await mkdtemp(join(tmpdir(), 'sage-npm-start-'))
  t.after(() => rm(dataDir, { recursive: true, force: true }))
  const port = await freePort()
  // What a clean clone has after npm ci: no .data, no environment but where to listen. `npm start` builds, then serves.
  const npm = spawn('npm', ['start'], {
    cwd: REPO_ROOT,
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? dataDir, PORT: String(port), SAGE_DATA_DIR: join(dataDir, '.data'), LOG_LEVEL: 'warn' },
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
  }, 200_000, 250)

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
