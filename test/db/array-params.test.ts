import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import { textArrayParam, timestamptzArrayParam, uuidArrayParam } from '../../src/db/array-params.js'
import { backends, type TestStore } from '../helper.js'

// A save's insert sends its batch as binary arrays (array-params.ts); each must read back as the text form would.

const TEXTS = ['', 'plain', 'quote " and \' and \\ backslash', '{braces, commas}', 'NULL', '数据库 连接池', '🦀 emoji', 'tab\tnew\nline', 'é'.repeat(3_000)]

for (const backend of backends()) {
  describe(`array parameters in binary (${backend.name})`, () => {
    let store: TestStore
    before(async () => {
      store = await backend.create()
    })
    after(() => store.drop())

    test('text keeps every character, its order, and its NULLs', async () => {
      const values = [...TEXTS, null, 'after a null']
      const { rows } = await store.db.query<{ t: string | null; n: number }>(
        'SELECT u.t, u.n::int AS n FROM unnest($1::text[]) WITH ORDINALITY AS u(t, n) ORDER BY u.n',
        [textArrayParam(values)]
      )
      assert.deepEqual(rows.map((r) => r.t), values)
    })

    test('text arrives as the server reads it: jsonb and tsvector casts parse it', async () => {
      const { rows } = await store.db.query<{ j: unknown; v: string }>(
        "SELECT u.j::jsonb AS j, u.v::tsvector::text AS v FROM unnest($1::text[], $2::text[]) AS u(j, v)",
        [textArrayParam(['{"cwd":"/home/dev/数据","n":1}']), textArrayParam(["'ledger':1,3 'export':2"])]
      )
      assert.deepEqual(rows[0]!.j, { cwd: '/home/dev/数据', n: 1 })
      assert.equal(rows[0]!.v, "'export':2 'ledger':1,3")
    })

    test('uuids and timestamps read back as written, to the millisecond, before 2000 too', async () => {
      const ids = ['0193a5c4-7e1f-7cc2-9d3a-0f1e2d3c4b5a', 'FFFFFFFF-0000-4000-8000-000000000001']
      const dates = [new Date('2026-11-22T12:34:56.789Z'), new Date('1999-12-31T23:59:59.999Z'), new Date(0)]
      const { rows } = await store.db.query<{ id: string }>('SELECT u::text AS id FROM unnest($1::uuid[]) AS u', [uuidArrayParam(ids)])
      assert.deepEqual(rows.map((r) => r.id), ids.map((id) => id.toLowerCase()))
      const times = await store.db.query<{ ms: string }>(
        'SELECT (extract(epoch FROM u) * 1000)::int8::text AS ms FROM unnest($1::timestamptz[]) AS u',
        [timestamptzArrayParam(dates)]
      )
      assert.deepEqual(times.rows.map((r) => Number(r.ms)), dates.map((d) => d.getTime()))
    })

    test('empty arrays are empty', async () => {
      const { rows } = await store.db.query<{ n: number }>(
        'SELECT (SELECT count(*) FROM unnest($1::text[]))::int + (SELECT count(*) FROM unnest($2::uuid[]))::int + (SELECT count(*) FROM unnest($3::timestamptz[]))::int AS n',
        [textArrayParam([]), uuidArrayParam([]), timestamptzArrayParam([])]
      )
      assert.equal(rows[0]!.n, 0)
    })

    test('a JavaScript array for a text[] parameter still works beside them (PGlite serializes it itself)', async () => {
      const { rows } = await store.db.query<{ n: number }>(
        'SELECT cardinality($1::text[])::int + cardinality($2::text[])::int AS n',
        [['a', 'b "quoted"'], textArrayParam(['c'])]
      )
      assert.equal(rows[0]!.n, 3)
    })
  })
}

test('a value that is not a UUID or not a date is refused before anything is sent', () => {
  assert.throws(() => uuidArrayParam(['0193a5c4-7e1f-7cc2-9d3a-0f1e2d3c4b5a', 'not-a-uuid']), /not a UUID: "not-a-uuid"/)
  assert.throws(() => uuidArrayParam(['0193a5c47e1f7cc29d3a0f1e2d3c4b5a']), /not a UUID/)
  assert.throws(() => timestamptzArrayParam([new Date('nonsense')]), /not a valid date/)
})
