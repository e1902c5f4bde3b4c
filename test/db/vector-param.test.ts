import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import { vectorArrayParam, vectorParam, vectorTypeOid } from '../../src/db/vector-param.js'
import { backends, type TestStore } from '../helper.js'

// Components a float4 holds exactly, so the text Postgres prints back is the number written.
const A = [0.5, -0.25, 3, 1.5, -7.75]
const B = [1, 0, -1, 0.125, 65536]

for (const backend of backends()) {
  describe(`vector parameters in binary (${backend.name})`, () => {
    let store: TestStore
    let oid: number
    before(async () => {
      store = await backend.create()
      oid = await vectorTypeOid((sql) => store.db.query(sql))
    })
    after(() => store.drop())

    test('one vector reads back as written, through a typed cast too', async () => {
      const { rows } = await store.db.query<{ v: string; d: number }>(
        'SELECT $1::vector::text AS v, ($1::vector(5) <=> $2::vector(5))::float8 AS d',
        [vectorParam(A), vectorParam(A)]
      )
      assert.equal(rows[0]!.v, `[${A.join(',')}]`)
      assert.equal(Number(rows[0]!.d), 0)
    })

    test('an array keeps its order and its NULLs', async () => {
      const { rows } = await store.db.query<{ v: string | null; n: number }>(
        'SELECT u.v::text AS v, u.n::int AS n FROM unnest($1::vector[]) WITH ORDINALITY AS u(v, n) ORDER BY u.n',
        [vectorArrayParam([A, null, B, undefined], oid)]
      )
      assert.deepEqual(rows.map((r) => r.v), [`[${A.join(',')}]`, null, `[${B.join(',')}]`, null])
    })

    test('an empty array is an empty array', async () => {
      const { rows } = await store.db.query<{ n: number }>('SELECT count(*)::int AS n FROM unnest($1::vector[])', [vectorArrayParam([], oid)])
      assert.equal(rows[0]!.n, 0)
    })

    test('a vector of the wrong dimension is refused by the typed cast', async () => {
      await assert.rejects(store.db.query('SELECT $1::vector(5)', [vectorParam([1, 2, 3])]), /expected 5 dimensions, not 3/)
    })
  })
}

test('a component that is not finite is refused before anything is sent', () => {
  assert.throws(() => vectorParam([1, Number.NaN]), /vector component 1 is NaN/)
  assert.throws(() => vectorArrayParam([[1], [Number.POSITIVE_INFINITY]], 1), /vector component 0 is Infinity/)
})

test('the binary layout is the one pgvector receives: dimension, zero, big-endian float4s', () => {
  assert.deepEqual([...vectorParam([1, -2])], [0, 2, 0, 0, 0x3f, 0x80, 0, 0, 0xc0, 0, 0, 0])
})
