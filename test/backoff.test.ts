import assert from 'node:assert/strict'
import { test } from 'node:test'
import { backoffDelay, jittered } from '../src/backoff.js'

test('the back-off doubles from its base and stops at its ceiling', () => {
  assert.deepEqual([0, 1, 2, 3, 4, 5, 60].map((attempt) => backoffDelay(attempt, 100, 1000)), [100, 200, 400, 800, 1000, 1000, 1000])
  assert.equal(backoffDelay(-1, 100, 1000), 100)
})

test('equal jitter keeps at least half the wait and never more than all of it', () => {
  for (let i = 0; i < 1000; i++) {
    const wait = jittered(800)
    assert.ok(wait >= 400 && wait <= 800, String(wait))
  }
})
