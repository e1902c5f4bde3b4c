import assert from 'node:assert/strict'
import { copyFile, mkdtemp, readdir, rm, stat } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, test } from 'node:test'
import pg from 'pg'
import { createPostgresCluster, postgresClusterAvailable } from '../support/postgres-cluster.js'
import { startSage, type SageProcess } from '../support/sage-process.js'
import { waitFor } from '../support/wait-for.js'

const skip = !postgresClusterAvailable() && process.env.CI !== 'true' && 'initdb not found (set PG_BIN)'
const NAMESPACE = 'spool-test'
const MESSAGE = 'The ledger export now pages by (account_id, posted_at, id) and streams the CSV.'

async function metric(sage: SageProcess, pattern: RegExp): Promise<boolean> {
  return pattern.test(await (await fetch(`${sage.url}/metrics`)).text())
}

describe('hook saves across a restart while the database is away', { skip }, () => {
  test('a Stop hook buffered while Postgres is down survives a SIGKILL, before and after its replay, and is written once', async (t) => {
    const cluster = await createPostgresCluster()
    t.after(() => cluster.destroy())
    const dataDir = await mkdtemp(join(tmpdir(), 'sage-spool-data-'))
    t.after(() => rm(dataDir, { recursive: true, force: true }))
    const spoolDir = join(dataDir, 'hook-spool')
    const env = { DATABASE_URL: cluster.url, SAGE_DATA_DIR: dataDir, LOG_LEVEL: 'info', RATE_LIMIT_MAX: '0' }

    await cluster.stop()
    const killed = await startSage(env)
    t.after(() => killed.stop('SIGKILL'))
    const res = await fetch(`${killed.url}/hooks/claude-code?namespace=${NAMESPACE}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ hook_event_name: 'Stop', session_id: 'spool-kill', cwd: dataDir, last_assistant_message: MESSAGE })
    })
    assert.deepEqual(await res.json(), {})
    await waitFor('the buffered save on disk', () => metric(killed, /sage_hook_spooled_saves_total\{event="spooled"\} 1/))
    await killed.stop('SIGKILL')
    assert.equal((await readdir(spoolDir)).length, 1)

    // Replayed while Postgres is still down, then killed again: the save must still be on disk.
    const replayedDown = await startSage(env)
    t.after(() => replayedDown.stop('SIGKILL'))
    assert.ok(await metric(replayedDown, /sage_hook_spooled_saves_total\{event="replayed"\} 1/))
    await replayedDown.stop('SIGKILL')
    assert.equal((await readdir(spoolDir)).length, 1)

    await cluster.start()
    const up = await startSage(env)
    t.after(() => up.stop('SIGKILL'))
    const client = new pg.Client({ connectionString: cluster.url })
    // The cluster is destroyed first at the end (hooks run in order): its goodbye must not throw here.
    client.on('error', () => undefined)
    await client.connect()
    t.after(() => client.end())
    const stored = async () => (await client.query<{ n: number }>('SELECT count(*)::int AS n FROM memories WHERE namespace = $1 AND content = $2', [NAMESPACE, MESSAGE])).rows[0]!.n
    await waitFor('the spooled save written', async () => (await stored()) === 1, 30_000)
    await waitFor('its spool file removed', async () => (await readdir(spoolDir)).length === 0)
    assert.equal(await up.stop('SIGTERM'), 0, up.output())
    assert.equal(await stored(), 1)
  })

  test('a Stop hook buffered while Postgres is down is spooled at SIGTERM and written exactly once after the restart, even when replayed twice', async (t) => {
    const cluster = await createPostgresCluster()
    t.after(() => cluster.destroy())
    const dataDir = await mkdtemp(join(tmpdir(), 'sage-spool-data-'))
    t.after(() => rm(dataDir, { recursive: true, force: true }))
    const spoolDir = join(dataDir, 'hook-spool')
    const env = { DATABASE_URL: cluster.url, SAGE_DATA_DIR: dataDir, LOG_LEVEL: 'info', RATE_LIMIT_MAX: '0' }
    const stored = async (): Promise<number> => {
      const client = new pg.Client({ connectionString: cluster.url })
      await client.connect()
      try {
        return (await client.query<{ n: number }>('SELECT count(*)::int AS n FROM memories WHERE namespace = $1 AND content = $2', [NAMESPACE, MESSAGE])).rows[0]!.n
      } finally {
        await client.end()
      }
    }

    await cluster.stop()
    const down = await startSage(env)
    t.after(() => down.stop('SIGKILL'))
    const res = await fetch(`${down.url}/hooks/claude-code?namespace=${NAMESPACE}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ hook_event_name: 'Stop', session_id: 'spool-session', cwd: dataDir, last_assistant_message: MESSAGE })
    })
    assert.equal(res.status, 200)
    assert.deepEqual(await res.json(), {})
    await waitFor('the save in the retry buffer', () => metric(down, /sage_hook_retry_buffer_size 1/))
    assert.equal(await down.stop('SIGTERM'), 0, down.output())
    assert.match(down.output(), /"spooled":1,.*spooled to disk for the next start/)
    const file = (await readdir(spoolDir))[0] ?? ''
    assert.ok(file.endsWith('.jsonl'), `spool folder: ${file}`)
    assert.equal((await stat(join(spoolDir, file)).then((s) => s.mode)) & 0o777, 0o600)
    // Kept aside to replay a second time: a spool replayed twice must still be one memory.
    const copy = join(dataDir, 'spool-copy.jsonl')
    await copyFile(join(spoolDir, file), copy)

    await cluster.start()
    const up = await startSage(env)
    t.after(() => up.stop('SIGKILL'))
    await waitFor('the spooled save written', async () => (await stored()) === 1, 30_000)
    await waitFor('the retry buffer empty', () => metric(up, /sage_hook_retry_buffer_size 0/))
    assert.ok(await metric(up, /sage_hook_spooled_saves_total\{event="replayed"\} 1/))
    assert.deepEqual(await readdir(spoolDir), [])
    assert.equal(await up.stop('SIGTERM'), 0, up.output())

    await copyFile(copy, join(spoolDir, file))
    const again = await startSage(env)
    t.after(() => again.stop('SIGKILL'))
    assert.ok(await metric(again, /sage_hook_spooled_saves_total\{event="replayed"\} 1/))
    await waitFor('the replayed save answered as a duplicate', () => metric(again, /sage_hook_deferred_saves_total\{outcome="saved"\} 1/), 30_000)
    assert.equal(await stored(), 1)
    assert.deepEqual(await readdir(spoolDir), [])
  })
})
