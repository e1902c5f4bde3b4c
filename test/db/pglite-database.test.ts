import assert from 'node:assert/strict'
import { test } from 'node:test'
import { classifyFailure } from '../../src/classify-failure.js'
import { textArrayParam, timestamptzArrayParam } from '../../src/db/array-params.js'
import { createPgliteDatabase, openPgliteWorker } from '../../src/db/pglite-database.js'
import { vectorParam } from '../../src/db/vector-param.js'

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

// PGlite runs in a worker thread (src/db/pglite-worker.ts): each statement, its parameters, its rows and its errors
// cross the thread by message.

test('PGlite: a statement that works the store for long leaves the event loop free meanwhile', async () => {
  const db = await createPgliteDatabase(undefined)
  try {
    let ticks = 0
    const timer = setInterval(() => ticks++, 5)
    const started = performance.now()
    try {
      await db.query("SELECT sum(length(md5(i::text))) FROM generate_series(1, 400000) i")
    } finally {
      clearInterval(timer)
    }
    const took = performance.now() - started
    // In the service's own thread, the statement held every timer until it ended: not one tick.
    assert.ok(took < 50 || ticks >= 2, `a 5 ms timer ticked ${ticks} times during a statement of ${took.toFixed(0)} ms`)
  } finally {
    await db.close()
  }
})

test('PGlite: a transaction commits what its work did, and a throw in the work rolls all of it back', async () => {
  const db = await createPgliteDatabase(undefined)
  try {
    await db.exec('CREATE TABLE t (n int PRIMARY KEY)')
    const answer = await db.transaction(async (tx) => {
      await tx.query('INSERT INTO t VALUES ($1)', [1])
      await tx.query('INSERT INTO t VALUES ($1)', [2])
      return (await tx.query<{ n: number }>('SELECT count(*)::int AS n FROM t')).rows[0]!.n
    })
    assert.equal(answer, 2)
    await assert.rejects(db.transaction(async (tx) => {
      await tx.query('INSERT INTO t VALUES ($1)', [3])
      throw new Error('changed my mind')
    }), /changed my mind/)
    const { rows } = await db.query<{ n: number }>('SELECT n FROM t ORDER BY n')
    assert.deepEqual(rows.map((row) => row.n), [1, 2])
  } finally {
    await db.close()
  }
})

test('PGlite: a statement from outside an open transaction waits for it to end, then sees what it committed', async () => {
  const db = await createPgliteDatabase(undefined)
  try {
    await db.exec('CREATE TABLE t (n int)')
    const order: string[] = []
    let outside: Promise<unknown> | undefined
    await db.transaction(async (tx) => {
      await tx.query('INSERT INTO t VALUES (1)')
      outside = db.query<{ n: number }>('SELECT count(*)::int AS n FROM t').then((result) => {
        order.push('outside')
        return result.rows[0]!.n
      })
      await new Promise((resolve) => setTimeout(resolve, 50))
      await tx.query('INSERT INTO t VALUES (2)')
      order.push('transaction')
    })
    assert.equal(await outside, 2)
    assert.deepEqual(order, ['transaction', 'outside'])
  } finally {
    await db.close()
  }
})

test('PGlite: binary parameters, dates, vectors and bytes cross the thread both ways', async () => {
  const db = await createPgliteDatabase(undefined)
  try {
    await db.exec('CREATE EXTENSION IF NOT EXISTS vector')
    const at = new Date('2026-01-02T03:04:05.678Z')
    const { rows } = await db.query<{ texts: string[]; at: Date; v: string; bytes: Uint8Array; ats: Date[] }>(
      "SELECT $1::text[] AS texts, $2::timestamptz AS at, $3::vector AS v, '\\x0102ff'::bytea AS bytes, $4::timestamptz[] AS ats",
      [textArrayParam(['a', null, 'é']), at, vectorParam([1, 0.5, -2]), timestamptzArrayParam([at])]
    )
    assert.deepEqual(rows[0]!.texts, ['a', null, 'é'])
    assert.ok(rows[0]!.at instanceof Date)
    assert.equal(rows[0]!.at.getTime(), at.getTime())
    assert.equal(rows[0]!.ats[0]!.getTime(), at.getTime())
    assert.equal(String(rows[0]!.v), '[1,0.5,-2]')
    assert.deepEqual([...rows[0]!.bytes], [1, 2, 255])
  } finally {
    await db.close()
  }
})

test('PGlite: an error keeps its Postgres fields, code first, inside a transaction too', async () => {
  const db = await createPgliteDatabase(undefined)
  try {
    await db.exec('CREATE TABLE t (n int PRIMARY KEY)')
    await db.query('INSERT INTO t VALUES (1)')
    const duplicate = (error: unknown) => {
      const e = error as { code?: string; detail?: string; constraint?: string; message: string }
      assert.equal(e.code, '23505', e.message)
      assert.match(e.detail ?? '', /\(n\)=\(1\)/)
      assert.equal(e.constraint, 't_pkey')
      return true
    }
    await assert.rejects(db.query('INSERT INTO t VALUES (1)'), duplicate)
    await assert.rejects(db.transaction((tx) => tx.query('INSERT INTO t VALUES (1)')), duplicate)
    await assert.rejects(db.query('SELECT nope FROM t'), (error: { code?: string }) => error.code === '42703')
    // The store still answers after the failures, and the failed transaction left nothing behind.
    assert.equal((await db.query<{ n: number }>('SELECT count(*)::int AS n FROM t')).rows[0]!.n, 1)
  } finally {
    await db.close()
  }
})

test('PGlite: a worker thread that ends fails the statements waiting on it and every later one, as a lost connection', async () => {
  const { database: db, worker } = await openPgliteWorker(undefined)
  try {
    const long = db.query('SELECT sum(length(md5(i::text))) FROM generate_series(1, 5000000) i')
    const open = db.transaction(async (tx) => {
      await tx.query('SELECT 1')
      await new Promise((resolve) => setTimeout(resolve, 1_000))
      return tx.query('SELECT 2')
    })
    await new Promise((resolve) => setTimeout(resolve, 100))
    await worker.terminate()
    const lost = (error: { code?: string; message: string }) => error.code === '08006' && /worker thread exited/.test(error.message)
    await assert.rejects(long, lost)
    await assert.rejects(open, lost)
    await assert.rejects(db.query('SELECT 1'), lost)
    assert.equal(classifyFailure(await db.query('SELECT 1').catch((error: unknown) => error)).kind, 'dependency')
  } finally {
    await db.close()
  }
})

test('PGlite: after close, a statement is refused and closing again is harmless', async () => {
  const db = await createPgliteDatabase(undefined)
  await db.query('SELECT 1')
  await db.close()
  await db.close()
  await assert.rejects(db.query('SELECT 1'), /closed/)
})
