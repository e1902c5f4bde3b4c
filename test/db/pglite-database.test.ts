import assert from 'node:assert/strict'
import { test } from 'node:test'
import { createPgliteDatabase } from '../../src/db/pglite-database.js'

// PGlite settles each statement's promise as a microtask: without a turn of the event loop after each, a loop of
// awaited statements held off every timer and every request until it ended.

test('PGlite: a loop of statements lets timers and I/O run between them', async () => {
  const db = await createPgliteDatabase(undefined)
  try {
    let firedAfter: number | undefined
    let done = 0
    const timer = setTimeout(() => {
      firedAfter = done
    }, 0)
    try {
      for (; done < 200; done++) await db.query('SELECT 1')
    } finally {
      clearTimeout(timer)
    }
    assert.ok(firedAfter !== undefined && firedAfter < 200, `a timer due at once fired after ${firedAfter ?? 'none'} of 200 statements`)
  } finally {
    await db.close()
  }
})

test('PGlite: statements inside a transaction let the event loop run too', async () => {
  const db = await createPgliteDatabase(undefined)
  try {
    let firedAfter: number | undefined
    let done = 0
    await db.transaction(async (tx) => {
      const timer = setTimeout(() => {
        firedAfter = done
      }, 0)
      for (; done < 200; done++) await tx.query('SELECT 1')
      clearTimeout(timer)
    })
    assert.ok(firedAfter !== undefined && firedAfter < 200, `a timer due at once fired after ${firedAfter ?? 'none'} of 200 statements`)
  } finally {
    await db.close()
  }
})
