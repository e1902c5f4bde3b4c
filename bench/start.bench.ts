// From `npm start` to ready (GET /health/ready answering 200) on the embedded store, with a current build:
// what a developer waits for each time they start Sage. Also `node dist/src/cli.js serve` alone, for comparison.
//   npx tsx bench/start.bench.ts [--runs 5]
// Each run gets a fresh PGlite directory (the first start, migrations included) and then starts again on it.
import { spawn } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { cpus, loadavg, tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { freePort } from '../test/support/sage-process.js'

const ROOT = fileURLToPath(new URL(import.meta.url.includes('/dist/') ? '../../' : '../', import.meta.url))
const { values } = parseArgs({ options: { runs: { type: 'string', default: '5' } } })
const runs = Number(values.runs)
if (!Number.isInteger(runs) || runs < 1) throw new Error('--runs must be a positive integer')

/** Starts `command` in its own process group, polls readiness every 10 ms, and stops the whole group once ready. */
async function timeToReady(command: string[], dataDir: string): Promise<number> {
  const port = await freePort()
  const started = performance.now()
  const child = spawn(command[0]!, command.slice(1), {
    cwd: ROOT,
    detached: true,
    stdio: ['ignore', 'ignore', 'pipe'],
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', SAGE_DATA_DIR: dataDir, PORT: String(port), LOG_LEVEL: 'warn' }
  })
  let stderr = ''
  child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()))
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
  try {
    for (;;) {
      if (child.exitCode !== null) throw new Error(`${command.join(' ')} exited before it was ready:\n${stderr}`)
      const ready = await fetch(`http://127.0.0.1:${port}/health/ready`).then((r) => r.status === 200, () => false)
      if (ready) return performance.now() - started
      if (performance.now() - started > 120_000) throw new Error(`${command.join(' ')} was not ready within 120 s:\n${stderr}`)
      await new Promise((resolve) => setTimeout(resolve, 10))
    }
  } finally {
    // npm start runs node as its child: the group takes both.
    if (child.exitCode === null) process.kill(-child.pid!, 'SIGTERM')
    await exited
    // npm can exit before the node it started has closed the store: the next start must not meet its lock.
    for (let waited = 0; waited < 20_000 && groupAlive(child.pid!); waited += 20) await new Promise((resolve) => setTimeout(resolve, 20))
  }
}

function groupAlive(pgid: number): boolean {
  try {
    process.kill(-pgid, 0)
    return true
  } catch {
    return false
  }
}

const summary = (label: string, ms: number[]) => {
  const sorted = [...ms].sort((a, b) => a - b)
  const median = sorted[Math.floor(sorted.length / 2)]!
  return `${label.padEnd(44)} median ${(median / 1000).toFixed(2)} s   min ${(sorted[0]! / 1000).toFixed(2)} s   max ${(sorted.at(-1)! / 1000).toFixed(2)} s`
}

const commands: Array<[string, string[]]> = [
  ['npm start', ['npm', 'start', '--silent']],
  ['node dist/src/cli.js serve', [process.execPath, 'dist/src/cli.js', 'serve']]
]
console.log(`${cpus().length} CPUs (${cpus()[0]?.model ?? 'unknown'}), load average ${loadavg().map((n) => n.toFixed(2)).join(' ')}, ${runs} runs each`)
// One start that builds if the tree is stale, so every measured start meets a current build.
{
  const dir = await mkdtemp(join(tmpdir(), 'sage-start-'))
  await timeToReady(commands[0]![1], join(dir, 'data')).finally(() => rm(dir, { recursive: true, force: true }))
}
for (const [label, command] of commands) {
  const fresh: number[] = []
  const again: number[] = []
  for (let i = 0; i < runs; i++) {
    const dir = await mkdtemp(join(tmpdir(), 'sage-start-'))
    try {
      fresh.push(await timeToReady(command, join(dir, 'data')))
      again.push(await timeToReady(command, join(dir, 'data')))
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  }
  console.log(summary(`${label}, new store`, fresh))
  console.log(summary(`${label}, existing store`, again))
}
