import assert from 'node:assert/strict'
import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { test, type TestContext } from 'node:test'
import Fastify from 'fastify'
import { createSaveRetryBuffer, type RetryOutcome, type SaveRetryBufferOptions, type SpoolEvent } from '../../src/hooks/save-retry-buffer.js'
import { createSaveSpool } from '../../src/hooks/save-spool.js'

/** Fastify's silent logger. */
const log = Fastify({ logger: false }).log
const retryable = new Error('ECONNREFUSED')
const rejected = new Error('validation')

function outcomes() {
  const seen: Record<RetryOutcome, number> = { buffered: 0, saved: 0, dropped: 0, rejected: 0 }
  return { seen, onOutcome: (outcome: RetryOutcome, n: number) => (seen[outcome] += n) }
}

async function until(condition: () => boolean, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!condition()) {
    if (Date.now() > deadline) throw new Error('condition not met in time')
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
}

test('retries in order with backoff until the store is back, then empties', async () => {
  let up = false
  const attempts: number[] = []
  const saved: string[] = []
  const { seen, onOutcome } = outcomes()
  const buffer = createSaveRetryBuffer<string>({
    save: async (item) => {
      attempts.push(Date.now())
      if (!up) throw retryable
      saved.push(item)
    },
    isRetryable: (error) => error === retryable,
    sizeOf: (item) => item.length,
    log,
    initialDelayMs: 20,
    maxDelayMs: 80,
    onOutcome
  })
  buffer.add('a')
  buffer.add('b')
  assert.equal(buffer.size(), 2)
  await until(() => attempts.length >= 4)
  assert.deepEqual(saved, [])
  // Waits grow: the later gaps are longer than the first.
  const gaps = attempts.slice(1).map((at, i) => at - attempts[i]!)
  assert.ok(gaps.at(-1)! >= gaps[0]!, `gaps ${gaps.join(', ')}`)
  up = true
  await until(() => buffer.size() === 0)
  assert.deepEqual(saved, ['a', 'b'])
  assert.deepEqual(seen, { buffered: 2, saved: 2, dropped: 0, rejected: 0 })
  await buffer.close(100)
})

test('an item a retry cannot fix is dropped as rejected, and the rest still go', async () => {
  const saved: string[] = []
  const { seen, onOutcome } = outcomes()
  const buffer = createSaveRetryBuffer<string>({
    save: async (item) => {
      if (item === 'bad') throw rejected
      saved.push(item)
    },
    isRetryable: (error) => error === retryable,
    sizeOf: (item) => item.length,
    log,
    initialDelayMs: 10,
    onOutcome
  })
  buffer.add('bad')
  buffer.add('good')
  assert.equal(await buffer.flush(), 1)
  assert.deepEqual(saved, ['good'])
  assert.equal(buffer.size(), 0)
  assert.deepEqual(seen, { buffered: 2, saved: 1, dropped: 0, rejected: 1 })
  await buffer.close(100)
})

test('bounded by count and by size: the oldest are dropped and counted', async () => {
  const { seen, onOutcome } = outcomes()
  const buffer = createSaveRetryBuffer<string>({
    save: async () => {
      throw retryable
    },
    isRetryable: () => true,
    sizeOf: (item) => item.length,
    log,
    maxItems: 3,
    maxChars: 10,
    initialDelayMs: 60_000,
    onOutcome
  })
  for (const item of ['1', '2', '3', '4']) buffer.add(item)
  assert.equal(buffer.size(), 3)
  buffer.add('x'.repeat(9))
  // 3 + 9 characters is over 10: the oldest go until it fits.
  assert.equal(buffer.size(), 2)
  assert.deepEqual(seen, { buffered: 5, saved: 0, dropped: 3, rejected: 0 })
  await buffer.close(50)
})

test('close makes one last attempt and stops retrying', async () => {
  let calls = 0
  const buffer = createSaveRetryBuffer<string>({
    save: async () => {
      calls++
    },
    isRetryable: () => true,
    sizeOf: () => 1,
    log,
    initialDelayMs: 60_000
  })
  buffer.add('last')
  await buffer.close(1_000)
  assert.equal(calls, 1)
  assert.equal(buffer.size(), 0)
})

test('close gives up after its timeout when the store hangs', async () => {
  const buffer = createSaveRetryBuffer<string>({
    save: () => new Promise(() => undefined),
    isRetryable: () => true,
    sizeOf: () => 1,
    log,
    initialDelayMs: 60_000
  })
  buffer.add('stuck')
  const started = Date.now()
  await buffer.close(100)
  assert.ok(Date.now() - started < 1_000)
  assert.equal(buffer.size(), 1)
})

interface Keyed {
  key: string
  content: string
}
const isKeyed = (value: unknown): value is Keyed =>
  typeof value === 'object' && value !== null && typeof (value as Keyed).key === 'string' && typeof (value as Keyed).content === 'string'

async function spoolDir(t: TestContext): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'sage-spool-'))
  t.after(() => rm(dir, { recursive: true, force: true }))
  return join(dir, 'hook-spool')
}

/** A buffer over a store that writes each key once, as the memory store does with idempotency keys. */
function spooledBuffer(dir: string, store: { up: boolean; rows: Map<string, string> }, extra: Partial<SaveRetryBufferOptions<Keyed>> = {}) {
  const events: Record<SpoolEvent, number> = { spooled: 0, replayed: 0, dropped: 0 }
  const buffer = createSaveRetryBuffer<Keyed>({
    save: async (item) => {
      if (!store.up) throw retryable
      if (!store.rows.has(item.key)) store.rows.set(item.key, item.content)
    },
    isRetryable: (error) => error === retryable,
    sizeOf: (item) => item.content.length,
    log,
    initialDelayMs: 10,
    spool: createSaveSpool(dir, isKeyed),
    onSpool: (event, n) => (events[event] += n),
    ...extra
  })
  return { buffer, events }
}

test('each save is spooled to a private file as it enters the buffer; the next start replays them, writes each once, and removes each file once written', async (t) => {
  const dir = await spoolDir(t)
  const store = { up: false, rows: new Map<string, string>() }
  const first = spooledBuffer(dir, store)
  first.buffer.add({ key: 'k1', content: 'the deploy uses blue-green' })
  first.buffer.add({ key: 'k2', content: 'tests run on both stores' })
  await first.buffer.close(100)
  assert.deepEqual(first.events, { spooled: 2, replayed: 0, dropped: 0 })

  const files = await readdir(dir)
  assert.equal(files.length, 2)
  const keys: string[] = []
  for (const file of files) {
    assert.match(file, /\.jsonl$/)
    assert.equal((await stat(join(dir, file))).mode & 0o777, 0o600)
    keys.push(...(await readFile(join(dir, file), 'utf8')).trim().split('\n').map((line) => (JSON.parse(line) as Keyed).key))
  }
  assert.deepEqual(keys.sort(), ['k1', 'k2'])

  // The store is back before the next start, and one item had been written already: a replay is no second copy.
  store.up = true
  store.rows.set('k1', 'the deploy uses blue-green')
  const second = spooledBuffer(dir, store)
  assert.equal(await second.buffer.replay(), 2)
  await until(() => second.buffer.size() === 0)
  assert.deepEqual([...store.rows.keys()], ['k1', 'k2'])
  assert.deepEqual(second.events, { spooled: 0, replayed: 2, dropped: 0 })
  await second.buffer.close(100)
  assert.deepEqual(await readdir(dir), [])
})

test('a process killed outright loses nothing: the save it buffered is on disk before any close, and the next start writes it', async (t) => {
  const dir = await spoolDir(t)
  const store = { up: false, rows: new Map<string, string>() }
  const killed = spooledBuffer(dir, store)
  killed.buffer.add({ key: 'k1', content: 'buffered, then SIGKILL' })
  // Never closed, as after a SIGKILL.
  await until(() => killed.events.spooled === 1)
  assert.equal((await readdir(dir)).length, 1)

  store.up = true
  const next = spooledBuffer(dir, store)
  assert.equal(await next.buffer.replay(), 1)
  await until(() => next.buffer.size() === 0)
  assert.deepEqual([...store.rows.keys()], ['k1'])
  await next.buffer.close(50)
  assert.deepEqual(await readdir(dir), [])
})

test('a replayed save stays on disk until it is written: killed again before that, the start after replays it once more', async (t) => {
  const dir = await spoolDir(t)
  const store = { up: false, rows: new Map<string, string>() }
  const first = spooledBuffer(dir, store)
  first.buffer.add({ key: 'k1', content: 'one' })
  await until(() => first.events.spooled === 1)
  // Replayed while the store is still down, then killed (never closed).
  const second = spooledBuffer(dir, store)
  assert.equal(await second.buffer.replay(), 1)
  assert.equal((await readdir(dir)).length, 1)
  store.up = true
  const third = spooledBuffer(dir, store)
  assert.equal(await third.buffer.replay(), 1)
  await until(() => third.buffer.size() === 0)
  assert.deepEqual([...store.rows.keys()], ['k1'])
  await third.buffer.close(50)
  assert.deepEqual(await readdir(dir), [])
})

test('a start replays only the files of processes that are gone: a running process keeps its own', async (t) => {
  const dir = await spoolDir(t)
  const spool = createSaveSpool(dir, isKeyed)
  await spool.write([{ key: 'mine-earlier', content: 'this PID, an earlier life' }])
  await mkdir(dir, { recursive: true })
  // The test runner that started this file is alive; a PID past the kernel's limit is not.
  await writeFile(join(dir, `${Date.now().toString().padStart(15, '0')}-${process.ppid}-00000000.jsonl`), `${JSON.stringify({ key: 'live', content: 'x' })}\n`)
  await writeFile(join(dir, `${Date.now().toString().padStart(15, '0')}-99999999-00000000.jsonl`), `${JSON.stringify({ key: 'gone', content: 'y' })}\n`)
  const store = { up: true, rows: new Map<string, string>() }
  const { buffer } = spooledBuffer(dir, store)
  assert.equal(await buffer.replay(), 2)
  await until(() => buffer.size() === 0)
  assert.deepEqual([...store.rows.keys()].sort(), ['gone', 'mine-earlier'])
  await buffer.close(50)
  assert.deepEqual((await readdir(dir)).map((name) => name.split('-')[1]), [String(process.ppid)])
})

test('a replay while the store is still down keeps the saves buffered, and they stay spooled through the next close', async (t) => {
  const dir = await spoolDir(t)
  const store = { up: false, rows: new Map<string, string>() }
  const first = spooledBuffer(dir, store)
  first.buffer.add({ key: 'k1', content: 'one' })
  await first.buffer.close(50)
  const second = spooledBuffer(dir, store)
  assert.equal(await second.buffer.replay(), 1)
  assert.equal(second.buffer.size(), 1)
  await second.buffer.close(50)
  assert.deepEqual(second.events, { spooled: 0, replayed: 1, dropped: 0 })
  assert.equal((await readdir(dir)).length, 1)
  const third = spooledBuffer(dir, store)
  assert.equal(await third.buffer.replay(), 1)
  store.up = true
  await until(() => third.buffer.size() === 0)
  assert.deepEqual([...store.rows.keys()], ['k1'])
  await third.buffer.close(50)
})

test('a corrupt spool line is skipped and counted; the start goes on with the rest', async (t) => {
  const dir = await spoolDir(t)
  const store = { up: true, rows: new Map<string, string>() }
  await createSaveSpool(dir, isKeyed).write([{ key: 'good', content: 'kept' }])
  const [file] = await readdir(dir)
  await writeFile(join(dir, file!), `${await readFile(join(dir, file!), 'utf8')}{"key":"half\n{"other":1}\n`)
  const { buffer, events } = spooledBuffer(dir, store)
  assert.equal(await buffer.replay(), 1)
  await until(() => buffer.size() === 0)
  assert.deepEqual([...store.rows.keys()], ['good'])
  assert.deepEqual(events, { spooled: 0, replayed: 1, dropped: 2 })
  await buffer.close(50)
  assert.deepEqual(await readdir(dir), [])
})

test('a spool that cannot be read leaves the start alone; one that cannot be written counts the saves as dropped', async (t) => {
  const parent = await spoolDir(t)
  // A file where the folder should be: reading and writing it both fail.
  await writeFile(parent, 'not a folder')
  const store = { up: false, rows: new Map<string, string>() }
  const { buffer, events } = spooledBuffer(parent, store)
  assert.equal(await buffer.replay(), 0)
  buffer.add({ key: 'k', content: 'lost' })
  await buffer.close(50)
  assert.deepEqual(events, { spooled: 0, replayed: 0, dropped: 1 })
})

test('replayed files from several shutdowns are held to the buffer\'s bound: the oldest are dropped and counted', async (t) => {
  const dir = await spoolDir(t)
  const spool = createSaveSpool(dir, isKeyed)
  await spool.write([{ key: 'a', content: '1' }, { key: 'b', content: '2' }])
  // Names sort by time: the second file is the newer.
  await new Promise((resolve) => setTimeout(resolve, 5))
  await spool.write([{ key: 'c', content: '3' }, { key: 'd', content: '4' }])
  const { seen, onOutcome } = outcomes()
  const store = { up: true, rows: new Map<string, string>() }
  const { buffer, events } = spooledBuffer(dir, store, { maxItems: 3, onOutcome })
  assert.equal(await buffer.replay(), 4)
  assert.equal(buffer.size(), 3)
  await until(() => buffer.size() === 0)
  assert.deepEqual([...store.rows.keys()], ['b', 'c', 'd'])
  assert.deepEqual(events, { spooled: 0, replayed: 4, dropped: 0 })
  assert.equal(seen.dropped, 1)
  await buffer.close(50)
})
