import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { existsSync } from 'node:fs'
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, test } from 'node:test'
import { DataDirLockedError, lockDataDir, LOCK_FILE } from '../../src/db/data-dir-lock.js'
import { runSage, startSage } from '../support/sage-process.js'

/** A start creates and migrates an embedded store: on a loaded 2-core machine, tens of seconds. */
const START_TIMEOUT_MS = 120_000

let work: string
before(async () => {
  work = await mkdtemp(join(tmpdir(), 'sage-lock-'))
})
after(() => rm(work, { recursive: true, force: true }))

/** The PID of a process that has exited: what a lock left by a crash names. */
async function deadPid(): Promise<number> {
  const child = spawn(process.execPath, ['-e', ''])
  await once(child, 'exit')
  return child.pid!
}

describe('the lock on SAGE_DATA_DIR, in this process', () => {
  test('a second lock is refused naming the holder; a released one can be taken again', async () => {
    const dir = join(work, 'unit')
    const lock = await lockDataDir(dir)
    assert.equal((await readFile(join(dir, LOCK_FILE), 'utf8')).trim(), String(process.pid))
    await assert.rejects(lockDataDir(dir), (error: unknown) => error instanceof DataDirLockedError && error.pid === process.pid)
    await lock.release()
    assert.equal(existsSync(join(dir, LOCK_FILE)), false)
    const again = await lockDataDir(dir)
    await again.release()
  })

  test('a stale lock (a dead PID, or a PID of ours this process never took) is taken over, by one of many racing', async () => {
    const dir = join(work, 'stale')
    await mkdir(dir, { recursive: true })
    await writeFile(join(dir, LOCK_FILE), `${await deadPid()}\n`)
    const lock = await lockDataDir(dir)
    assert.equal((await readFile(join(dir, LOCK_FILE), 'utf8')).trim(), String(process.pid))
    await lock.release()

    // A container restarted with the same PID finds its own PID in the lock it left.
    await writeFile(join(dir, LOCK_FILE), `${process.pid}\n`)
    const own = await lockDataDir(dir)
    await own.release()
  })
})

describe('one owner per embedded store, between processes', () => {
  test('a second serve and a migrate refuse naming the PID of the running one; the first keeps serving, its lock goes with it', async () => {
    const data = { SAGE_DATA_DIR: join(work, 'shared') }
    const first = await startSage(data, START_TIMEOUT_MS)
    try {
      const pid = String(first.child.pid)
      assert.equal((await readFile(join(data.SAGE_DATA_DIR, LOCK_FILE), 'utf8')).trim(), pid)

      const second = await runSage(['serve'], { ...data, PORT: '0' }, START_TIMEOUT_MS)
      assert.equal(second.code, 1, second.stdout + second.stderr)
      assert.match(second.stderr, new RegExp(`in use by another Sage process \\(PID ${pid}\\)`))

      const migrate = await runSage(['migrate'], data, START_TIMEOUT_MS)
      assert.equal(migrate.code, 1, migrate.stdout + migrate.stderr)
      assert.match(migrate.stderr, new RegExp(`in use by the running Sage \\(PID ${pid}\\).*restart`))

      const saved = await fetch(`${first.url}/v1/memories`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ content: 'still mine' }) })
      assert.equal(saved.status, 201)
    } finally {
      assert.equal(await first.stop(), 0, first.output())
    }
    assert.equal(existsSync(join(data.SAGE_DATA_DIR, LOCK_FILE)), false, 'a clean stop removes the lock')
    const migrate = await runSage(['migrate'], data, START_TIMEOUT_MS)
    assert.equal(migrate.code, 0, migrate.stderr)
  })

  test('a lock left by a process that died is taken over at start', async () => {
    const dir = join(work, 'crashed')
    await mkdir(dir, { recursive: true })
    await writeFile(join(dir, LOCK_FILE), `${await deadPid()}\n`)
    const sage = await startSage({ SAGE_DATA_DIR: dir }, START_TIMEOUT_MS)
    try {
      assert.equal((await readFile(join(dir, LOCK_FILE), 'utf8')).trim(), String(sage.child.pid))
    } finally {
      assert.equal(await sage.stop(), 0, sage.output())
    }
  })

  test('without SAGE_DATA_DIR the store is the user\'s, whatever folder a command runs in', async () => {
    const home = join(work, 'home')
    const [here, there] = [join(work, 'here'), join(work, 'there')]
    await Promise.all([mkdir(here, { recursive: true }), mkdir(there, { recursive: true })])
    const sage = await startSage({ HOME: home }, START_TIMEOUT_MS)
    try {
      const store = join(home, '.local', 'share', 'sage-memory')
      assert.equal((await readFile(join(store, LOCK_FILE), 'utf8')).trim(), String(sage.child.pid))
      assert.ok(existsSync(join(store, 'pglite')))
      // From another folder, the same store: refused while the service holds it, not a second store beside it.
      const migrate = await runSage(['migrate'], { HOME: home }, START_TIMEOUT_MS, there)
      assert.equal(migrate.code, 1, migrate.stdout + migrate.stderr)
      assert.match(migrate.stderr, new RegExp(`${store.replace(/[.]/g, '\\.')} is in use by the running Sage \\(PID ${sage.child.pid}\\)`))
    } finally {
      assert.equal(await sage.stop(), 0, sage.output())
    }
    const xdg = join(work, 'xdg')
    const migrate = await runSage(['migrate'], { HOME: home, XDG_DATA_HOME: xdg }, START_TIMEOUT_MS, here)
    assert.equal(migrate.code, 0, migrate.stderr)
    assert.ok(existsSync(join(xdg, 'sage-memory', 'pglite')))
    assert.equal(existsSync(join(here, '.data')), false)
    assert.equal(existsSync(join(there, '.data')), false)
  })
})
