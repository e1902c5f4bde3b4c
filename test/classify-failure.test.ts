import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import pg from 'pg'
import { classifyFailure, DependencyError } from '../src/classify-failure.js'
import { createPgDatabase } from '../src/db/pg-database.js'
import { SageError, validationError } from '../src/errors.js'
import { toErrorReply } from '../src/http-errors.js'
import { isRetryable } from '../src/hooks/claude-code-hook.js'
import { isPassingFailure } from '../src/queue/save-queue.js'
import { freePort } from './support/sage-process.js'

const base = process.env.TEST_DATABASE_URL
const skip = !base && process.env.CI !== 'true' && 'TEST_DATABASE_URL not set'

/** The error a real Postgres (or pg itself) answers to `provoke`. */
async function failureOf(provoke: () => Promise<unknown>): Promise<unknown> {
  try {
    await provoke()
  } catch (error) {
    return error
  }
  throw new Error('expected a failure')
}

const kindOf = (error: unknown) => {
  const failure = classifyFailure(error)
  return failure.kind === 'dependency' ? `${failure.dependency} ${failure.state}` : failure.kind
}

/** The three users of the classification agree on every failure. */
function assertAgreement(error: unknown) {
  const dependency = classifyFailure(error).kind === 'dependency'
  assert.equal(isPassingFailure(error), dependency)
  assert.equal(isRetryable(error), dependency)
  const reply = toErrorReply(error)
  if (dependency) {
    assert.equal(reply.statusCode, 503)
    assert.ok(Number(reply.headers['retry-after']) > 0)
  }
}

describe('classifyFailure on real Postgres errors', { skip }, () => {
  const client = async (options: pg.ClientConfig = {}) => {
    const c = new pg.Client({ connectionString: base, ...options })
    await c.connect()
    return c
  }

  test('a statement timeout (57014) is the database being busy, answered 503 with a message saying so', async () => {
    const c = await client()
    try {
      await c.query('SET statement_timeout = 50')
      const error = await failureOf(() => c.query('SELECT pg_sleep(2)'))
      assert.equal((error as { code?: string }).code, '57014')
      assert.equal(kindOf(error), 'database busy')
      assert.match(toErrorReply(error).message, /did not answer within its statement timeout/)
      assertAgreement(error)
    } finally {
      await c.end()
    }
  })

  test('a lock not available (55P03), a deadlock (40P01) and a serialization failure (40001) are passing', async () => {
    const [a, b] = [await client(), await client()]
    try {
      await a.query('DROP TABLE IF EXISTS sage_classify_probe')
      await a.query('CREATE TABLE sage_classify_probe (id int PRIMARY KEY, n int)')
      await a.query('INSERT INTO sage_classify_probe VALUES (1, 0), (2, 0)')

      await a.query('BEGIN')
      await a.query('SELECT * FROM sage_classify_probe WHERE id = 1 FOR UPDATE')
      const noWait = await failureOf(() => b.query('SELECT * FROM sage_classify_probe WHERE id = 1 FOR UPDATE NOWAIT'))
      assert.equal((noWait as { code?: string }).code, '55P03')
      assert.equal(kindOf(noWait), 'database busy')
      assertAgreement(noWait)
      await a.query('ROLLBACK')

      await a.query('BEGIN')
      await b.query('BEGIN')
      await a.query('UPDATE sage_classify_probe SET n = 1 WHERE id = 1')
      await b.query('UPDATE sage_classify_probe SET n = 1 WHERE id = 2')
      const [first, second] = await Promise.allSettled([
        a.query('UPDATE sage_classify_probe SET n = 2 WHERE id = 2'),
        b.query('UPDATE sage_classify_probe SET n = 2 WHERE id = 1')
      ])
      const deadlock = [first, second].find((r) => r.status === 'rejected')?.reason as { code?: string }
      assert.equal(deadlock?.code, '40P01')
      assert.equal(kindOf(deadlock), 'database busy')
      assertAgreement(deadlock)
      await a.query('ROLLBACK')
      await b.query('ROLLBACK')

      await a.query('BEGIN ISOLATION LEVEL SERIALIZABLE')
      await b.query('BEGIN ISOLATION LEVEL SERIALIZABLE')
      await a.query('SELECT sum(n) FROM sage_classify_probe')
      await b.query('SELECT sum(n) FROM sage_classify_probe')
      await a.query('UPDATE sage_classify_probe SET n = n + 1 WHERE id = 1')
      await b.query('UPDATE sage_classify_probe SET n = n + 1 WHERE id = 2')
      await a.query('COMMIT')
      const serialization = await failureOf(() => b.query('COMMIT'))
      assert.equal((serialization as { code?: string }).code, '40001')
      assert.equal(kindOf(serialization), 'database busy')
      assertAgreement(serialization)
    } finally {
      await a.query('ROLLBACK').catch(() => undefined)
      await b.query('ROLLBACK').catch(() => undefined)
      await a.query('DROP TABLE IF EXISTS sage_classify_probe').catch(() => undefined)
      await Promise.all([a.end(), b.end()])
    }
  })

  test('an exhausted pool is "busy: the connection pool is exhausted"; a refused connection is the database down', async () => {
    const db = createPgDatabase({ url: base!, poolMax: 1, statementTimeoutMs: 30_000, connectionTimeoutMs: 200 })
    try {
      const held = db.withConnection(() => new Promise((resolve) => setTimeout(resolve, 1000)))
      const exhausted = await failureOf(() => db.query('SELECT 1'))
      await held
      assert.equal(kindOf(exhausted), 'database busy')
      assert.equal(toErrorReply(exhausted).message, 'the database is busy: the connection pool is exhausted')
      assertAgreement(exhausted)
    } finally {
      await db.close()
    }
    const nobody = createPgDatabase({ url: `postgres://postgres@127.0.0.1:${await freePort()}/postgres`, poolMax: 1, statementTimeoutMs: 30_000 })
    try {
      const refused = await failureOf(() => nobody.query('SELECT 1'))
      assert.equal(kindOf(refused), 'database down')
      assertAgreement(refused)
    } finally {
      await nobody.close()
    }
  })

  test('the client-side query timeout is the database not answering in time', async () => {
    const db = createPgDatabase({ url: base!, poolMax: 1, statementTimeoutMs: 30_000, queryTimeoutMs: 100 })
    try {
      const error = await failureOf(() => db.query('SELECT pg_sleep(1)'))
      assert.equal(kindOf(error), 'database down')
      assert.match(toErrorReply(error).message, /did not answer in time/)
      assertAgreement(error)
      // The connection that timed out was thrown away: the next query is answered at once.
      assert.equal((await db.query<{ n: number }>('SELECT 1 AS n')).rows[0]!.n, 1)
    } finally {
      await db.close()
    }
  })

  test('a syntax error, a unique violation and a TypeError are bugs: 500, never retried', async () => {
    const c = await client()
    try {
      const syntax = await failureOf(() => c.query('SELEC 1'))
      assert.equal((syntax as { code?: string }).code, '42601')
      await c.query('CREATE TEMP TABLE once (id int PRIMARY KEY)')
      await c.query('INSERT INTO once VALUES (1)')
      const unique = await failureOf(() => c.query('INSERT INTO once VALUES (1)'))
      assert.equal((unique as { code?: string }).code, '23505')
      // A TypeError whose message mentions a connection is still a bug.
      const typeError = new TypeError('Cannot read properties of undefined (reading \'connection is closed\')')
      for (const error of [syntax, unique, typeError]) {
        assert.equal(kindOf(error), 'bug')
        assert.equal(toErrorReply(error).statusCode, 500)
        assertAgreement(error)
      }
    } finally {
      await c.end()
    }
  })
})

describe('classifyFailure without a database', () => {
  test('the caller\'s fault stays 4xx and is never retried; Sage\'s own dependency errors name the dependency', () => {
    const invalid = validationError('content is required')
    assert.deepEqual(classifyFailure(invalid), { kind: 'caller', statusCode: 400 })
    assert.equal(isRetryable(invalid), false)
    assert.equal(isPassingFailure(invalid), false)
    const embedder = new DependencyError('embedder', 'down', 'the embedder is unavailable', 10)
    assert.deepEqual(toErrorReply(embedder), {
      statusCode: 503, error: 'Service Unavailable', code: 'SAGE_UNAVAILABLE', message: 'the embedder is unavailable', headers: { 'retry-after': '10' }
    })
    assert.equal(kindOf(new SageError(500, 'SAGE_INTERNAL', 'x')), 'bug')
    assert.equal(kindOf(new Error('Command timed out')), 'redis down')
  })
})
