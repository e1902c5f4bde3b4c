import { spawn, type ChildProcess } from 'node:child_process'
import { createWriteStream, existsSync } from 'node:fs'
import { readFile } from 'node:fs/promises'
import { createServer } from 'node:net'
import { fileURLToPath } from 'node:url'

export interface ServiceOptions {
  /** Postgres URL, or undefined for the embedded PGlite store under `dataDir`. */
  databaseUrl?: string
  dataDir: string
  /** Where the service's own output goes, so a failure can be read afterwards. */
  logFile: string
}

export interface RunningService {
  url: string
  pid: number
  /** SIGTERM to this one process, then wait for it to exit (SIGKILL after a grace period). */
  stop(): Promise<void>
}

/** A port nothing listens on: bind :0, read what the kernel chose, let it go. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer()
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const address = server.address()
      const port = typeof address === 'object' && address ? address.port : 0
      server.close(() => resolve(port))
    })
  })
}

/** The compiled CLI (dist/src/cli.js), or the TypeScript source through tsx when it was not built. */
function cliCommand(): string[] {
  const compiled = fileURLToPath(new URL(import.meta.url.includes('/dist/bench/') ? '../src/cli.js' : '../dist/src/cli.js', import.meta.url))
  if (existsSync(compiled)) return [compiled, 'serve']
  return ['--import', 'tsx', fileURLToPath(new URL('../src/cli.ts', import.meta.url)), 'serve']
}

function exited(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve()
  return new Promise((resolve) => child.once('exit', () => resolve()))
}

async function logTail(logFile: string): Promise<string> {
  const text = await readFile(logFile, 'utf8').catch(() => '')
  return text.split('\n').slice(-20).join('\n')
}

/** Starts `sage-memory serve` as a child on a free loopback port and resolves once /health answers. */
export async function startService(options: ServiceOptions): Promise<RunningService> {
  const port = await freePort()
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    PORT: String(port),
    HOST: '127.0.0.1',
    LOG_LEVEL: 'warn',
    SAGE_DATA_DIR: options.dataDir,
    // The limiter still runs on every request, as in production, but a load test must never meet it.
    RATE_LIMIT_MAX: '1000000000'
  }
  if (options.databaseUrl) env.DATABASE_URL = options.databaseUrl
  else delete env.DATABASE_URL
  // The default configuration: no Redis, so saves are synchronous and caches and limits live in the process.
  delete env.REDIS_URL

  const log = createWriteStream(options.logFile, { flags: 'a' })
  const child = spawn(process.execPath, cliCommand(), { env, stdio: ['ignore', 'pipe', 'pipe'] })
  child.stdout.pipe(log, { end: false })
  child.stderr.pipe(log, { end: false })
  const url = `http://127.0.0.1:${port}`

  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM')
      const timer = setTimeout(() => child.kill('SIGKILL'), 20_000)
      await exited(child)
      clearTimeout(timer)
    }
    log.end()
  }

  const deadline = Date.now() + 120_000
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) {
      log.end()
      throw new Error(`the service exited before it served (${child.exitCode ?? child.signalCode}); its log ends:\n${await logTail(options.logFile)}`)
    }
    const healthy = await fetch(`${url}/health`).then((response) => response.ok, () => false)
    if (healthy) return { url, pid: child.pid as number, stop }
    if (Date.now() > deadline) {
      await stop()
      throw new Error(`the service did not answer /health within 120 s; its log ends:\n${await logTail(options.logFile)}`)
    }
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
}
