import assert from 'node:assert/strict'
import { test } from 'node:test'
import Fastify from 'fastify'
import { createSaveRetryBuffer, type RetryOutcome } from '../../src/hooks/save-retry-buffer.js'

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
