import { execFile, spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { createWriteStream, mkdtempSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { REPO_ROOT } from '../helper.js'

export interface SageProcess {
  url: string
  child: ChildProcess
  /** Everything the process wrote, for assertion messages. */
  output(): string
  /** Sends `signal` and resolves with the exit code (or the signal that ended it). */
  stop(signal?: NodeJS.Signals): Promise<number | NodeJS.Signals | null>
}

let home: string | undefined
/**
 * The HOME a started process gets unless the test gives one: a folder of this test process's own, so a store,
 * model cache or settings backup that defaults to the user's data folder never lands in the real home.
 */
export function testHome(): string {
  return (home ??= mkdtempSync(join(tmpdir(), 'sage-home-')))
}

/** A port nobody listens on right now, off the standard ones. */
export async function freePort(): Promise<number> {
  const server = createServer()
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const { port } = server.address() as { port: number }
  server.close()
  await once(server, 'close')
  return port
}

/**
 * Starts the built service (`node dist/src/cli.js serve`) as its own process, with only `env` (and PATH) as its
 * environment, and waits until /health answers. With `logFile`, its output is also appended there, to be read after a long run.
 */
export async function startSage(env: Record<string, string>, timeoutMs = 30_000, { logFile }: { logFile?: string } = {}): Promise<SageProcess> {
  const port = env.PORT ?? String(await freePort())
  // Strict: a promise rejected with nobody waiting ends the process at once, so no test can miss one.
  const child = spawn(process.execPath, ['--unhandled-rejections=strict', join(REPO_ROOT, 'dist/src/cli.js'), 'serve'], {
    env: { PATH: process.env.PATH ?? '', HOME: testHome(), HOST: '127.0.0.1', LOG_LEVEL: 'warn', ...env, PORT: port },
    stdio: ['ignore', 'pipe', 'pipe']
  })
  let output = ''
  const log = logFile === undefined ? undefined : createWriteStream(logFile, { flags: 'a' })
  for (const stream of [child.stdout!, child.stderr!]) {
    stream.on('data', (chunk: Buffer) => {
      output += chunk.toString()
      log?.write(chunk)
    })
  }
  // 'close' comes after the last output, where 'exit' may not.
  if (log) child.once('close', () => log.end())
  const exited = once(child, 'exit').then(([code, signal]) => (code ?? signal) as number | NodeJS.Signals | null)
  const url = `http://127.0.0.1:${port}`
  const deadline = Date.now() + timeoutMs
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) throw new Error(`sage exited before serving:\n${output}`)
    try {
      const res = await fetch(`${url}/health`)
      if (res.ok) break
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      child.kill('SIGKILL')
      throw new Error(`sage did not answer /health within ${timeoutMs} ms:\n${output}`)
    }
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
  return {
    url,
    child,
    output: () => output,
    async stop(signal: NodeJS.Signals = 'SIGTERM') {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal)
      return exited
    }
  }
}

const execFileAsync = promisify(execFile)

/**
 * Runs the built `sage-memory` with `args` and only `env` (and PATH) as its environment, to its exit or `timeoutMs`,
 * in `cwd` (default this process's).
 */
export async function runSage(args: string[], env: Record<string, string> = {}, timeoutMs = 60_000, cwd?: string): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await execFileAsync(process.execPath, [join(REPO_ROOT, 'dist/src/cli.js'), ...args], { env: { PATH: process.env.PATH ?? '', HOME: testHome(), ...env }, timeout: timeoutMs, cwd })
    return { code: 0, stdout, stderr }
  } catch (error) {
    const failed = error as { code: number; stdout: string; stderr: string }
    return { code: failed.code, stdout: failed.stdout, stderr: failed.stderr }
  }
}
