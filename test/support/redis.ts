import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { randomBytes } from 'node:crypto'
import { Redis } from 'ioredis'
import { freePort } from './sage-process.js'

/** A key prefix no other test file (or run) shares, so files never see each other's keys. */
export function testKeyPrefix(label: string): string {
  return `sage-test:${label}:${process.pid}:${randomBytes(3).toString('hex')}:`
}

/** A plain client for assertions, not one of Sage's. */
export function testRedisClient(url: string): Redis {
  return new Redis(url, { maxRetriesPerRequest: 1, lazyConnect: false })
}

/** Deletes every key under `prefix` (SCAN, never FLUSHDB: the database is shared). */
export async function dropKeys(url: string, prefix: string): Promise<void> {
  const redis = testRedisClient(url)
  try {
    let cursor = '0'
    do {
      const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000)
      cursor = next
      if (keys.length > 0) await redis.del(...keys)
    } while (cursor !== '0')
  } finally {
    redis.disconnect()
  }
}

export interface RedisServer {
  url: string
  port: number
  child: ChildProcess
  /** Sends `signal` to this server's pid (SIGSTOP freezes it, SIGCONT thaws it). */
  signal(signal: NodeJS.Signals): void
  /** Stops it and waits for the exit. */
  stop(): Promise<void>
}

/**
 * A private redis-server on a free port that a test may freeze or stop: without persistence, or with an append-only
 * file in `appendOnlyDir` fsynced on every write (a server started again on the same folder has every acknowledged write).
 */
export async function startRedisServer(port?: number, { appendOnlyDir }: { appendOnlyDir?: string } = {}): Promise<RedisServer> {
  const chosen = port ?? (await freePort())
  const persistence = appendOnlyDir === undefined ? ['--appendonly', 'no'] : ['--appendonly', 'yes', '--appendfsync', 'always', '--dir', appendOnlyDir]
  const child = spawn('redis-server', ['--port', String(chosen), '--bind', '127.0.0.1', '--save', '', ...persistence], {
    stdio: ['ignore', 'pipe', 'pipe']
  })
  let output = ''
  child.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()))
  child.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()))
  const url = `redis://127.0.0.1:${chosen}/0`
  const deadline = Date.now() + 10_000
  for (;;) {
    if (child.exitCode !== null) throw new Error(`redis-server exited: ${output}`)
    const probe = new Redis(url, { lazyConnect: true, retryStrategy: () => null, maxRetriesPerRequest: 0 })
    probe.on('error', () => undefined)
    const up = await probe.connect().then(() => probe.ping().then(() => true), () => false)
    probe.disconnect()
    if (up) break
    if (Date.now() > deadline) {
      child.kill('SIGKILL')
      throw new Error(`redis-server did not answer on port ${chosen}: ${output}`)
    }
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
  return {
    url,
    port: chosen,
    child,
    signal: (signal) => {
      child.kill(signal)
    },
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return
      const exited = once(child, 'exit')
      child.kill('SIGCONT')
      child.kill('SIGTERM')
      await exited
    }
  }
}
