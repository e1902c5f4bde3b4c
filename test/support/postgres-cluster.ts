import { execFile } from 'node:child_process'
import { existsSync } from 'node:fs'
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { freePort } from './sage-process.js'

const run = promisify(execFile)

/** A throwaway Postgres server of the test's own, which it may stop and start (the shared one it must not). */
export interface PostgresCluster {
  /** postgres://postgres@127.0.0.1:<port>/postgres */
  url: string
  start(): Promise<void>
  /** Fast shutdown (connections are cut, as when the database goes away), or immediate: a crash, no checkpoint. */
  stop(mode?: 'fast' | 'immediate'): Promise<void>
  /** SIGSTOP (or SIGCONT) to this cluster's postmaster and every process it started, and to no other. */
  signal(signal: 'SIGSTOP' | 'SIGCONT'): Promise<void>
  destroy(): Promise<void>
}

const BIN = process.env.PG_BIN ?? '/usr/lib/postgresql/15/bin'

/** The processes whose parent is `pid`, from /proc. */
async function childrenOf(pid: number): Promise<number[]> {
  const children: number[] = []
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue
    const stat = await readFile(`/proc/${entry}/stat`, 'utf8').catch(() => '')
    // The parent is the second field after the command, which is in parentheses and may hold spaces.
    const parent = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1])
    if (parent === pid) children.push(Number(entry))
  }
  return children
}

/** Whether this machine can run one: Postgres's own binaries (pgvector installed for them). */
export function postgresClusterAvailable(): boolean {
  return existsSync(join(BIN, 'initdb')) && existsSync(join(BIN, 'pg_ctl'))
}

/**
 * initdb into a temporary folder and start on a free loopback port. Postgres refuses to run as root, so under
 * root every command runs as the `postgres` user through runuser.
 */
export async function createPostgresCluster(): Promise<PostgresCluster> {
  const asPostgres = process.getuid?.() === 0 ? ['runuser', '-u', 'postgres', '--'] : []
  const pg = async (tool: string, args: string[]) => {
    const [command, ...rest] = [...asPostgres, join(BIN, tool), ...args]
    return run(command!, rest, { timeout: 60_000 })
  }
  const dir = await mkdtemp(join(tmpdir(), 'sage-pg-'))
  if (asPostgres.length > 0) await run('chown', ['postgres:postgres', dir])
  const data = join(dir, 'data')
  const port = await freePort()
  await pg('initdb', ['-D', data, '-U', 'postgres', '-A', 'trust', '-E', 'UTF8', '--no-sync', '--no-instructions'])
  const options = `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off`
  let running = false
  const cluster: PostgresCluster = {
    url: `postgres://postgres@127.0.0.1:${port}/postgres`,
    async start() {
      await pg('pg_ctl', ['-D', data, '-o', options, '-l', join(dir, 'server.log'), '-w', 'start'])
      running = true
    },
    async stop(mode = 'fast') {
      await pg('pg_ctl', ['-D', data, '-m', mode, '-w', 'stop'])
      running = false
    },
    async signal(signal) {
      const postmaster = Number((await readFile(join(data, 'postmaster.pid'), 'utf8')).split('\n')[0])
      const pids = [postmaster, ...(await childrenOf(postmaster))]
      for (const pid of signal === 'SIGSTOP' ? pids.reverse() : pids) process.kill(pid, signal)
    },
    async destroy() {
      if (running) await cluster.stop().catch(() => undefined)
      await rm(dir, { recursive: true, force: true })
    }
  }
  await cluster.start()
  return cluster
}
