import assert from 'node:assert/strict'
import { test } from 'node:test'
import type { FastifyBaseLogger } from 'fastify'
import { createRoundFailures } from '../src/round-failures.js'

function recordingLog() {
  const lines: Array<{ level: string; fields: Record<string, unknown>; msg: string }> = []
  const at = (level: string) => (fields: Record<string, unknown>, msg: string) => void lines.push({ level, fields, msg })
  return { lines, log: { warn: at('warn'), info: at('info'), debug: at('debug') } as unknown as FastifyBaseLogger }
}

const refused = Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), { code: 'ECONNREFUSED' })
const timedOut = Object.assign(new Error('canceling statement due to statement timeout'), { code: '57014' })

test('failed rounds warn once a run whatever the reason, and one line says when they work again', () => {
  const { lines, log } = recordingLog()
  const failures = createRoundFailures(log, 'folding term statistics', 'folding term statistics failed; retrying')
  failures.succeeded()
  for (let i = 0; i < 5; i++) failures.failed(refused)
  failures.failed(timedOut, { waiting: 3 })
  failures.succeeded()
  failures.succeeded()
  failures.failed(refused)
  assert.deepEqual(lines.map((line) => `${line.level} ${line.msg}`), [
    'warn folding term statistics failed; retrying',
    'debug folding term statistics failed; retrying',
    'debug folding term statistics failed; retrying',
    'debug folding term statistics failed; retrying',
    'debug folding term statistics failed; retrying',
    'debug folding term statistics failed; retrying',
    'info folding term statistics works again',
    'warn folding term statistics failed; retrying'
  ])
  assert.equal(lines[5]!.fields.waiting, 3)
  assert.equal(lines[6]!.fields.failed_rounds, 6)
  assert.equal(typeof lines[6]!.fields.failing_ms, 'number')
})

test('a bug warns with its error every round, even inside a run of outage rounds', () => {
  const { lines, log } = recordingLog()
  const failures = createRoundFailures(log, 'vector indexing', 'vector indexing round failed')
  failures.failed(refused)
  failures.failed(new TypeError('x is not a function'))
  failures.failed(new TypeError('x is not a function'))
  assert.deepEqual(lines.map((line) => line.level), ['warn', 'warn', 'warn'])
  assert.ok(lines[1]!.fields.err instanceof TypeError)
})
