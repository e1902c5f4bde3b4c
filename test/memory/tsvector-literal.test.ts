import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import { tsvectorLiteral } from '../../src/memory/memory-store.js'
import { searchTerms } from '../../src/memory/memory-service.js'
import { backends, type TestStore } from '../helper.js'

// A save sends its search terms as a ready tsvector (tsvectorLiteral) instead of asking Postgres to parse them with
// to_tsvector('simple', …). Queries are still parsed by to_tsquery('simple', …), so the stored lexemes and their
// positions must be exactly what to_tsvector would have made, for every kind of text a memory holds.

const TEXTS = [
  'We decided to keep the ledgerExport cursor in src/export/ledger.ts and retry ERR_CONN_RESET with backoff.',
  '数据库连接池在高峰期耗尽，我们把 DB_POOL_MAX 调到 20。',
  'データベースの接続プールを増やした。한국어 텍스트도 저장한다.',
  'Café naïve résumé Straße ÆON Øresund — façade',
  'Привет мир, ошибка в модуле оплаты; Ελληνικά γράμματα; עברית; العربية; ไทย',
  'p99 p50 sha256 v1.2.3 1e10 0x1F 42 007 ١٢٣ ३४५',
  "don't won't it's O'Brien back\\slash",
  'x',
  '',
  '!!! ??? ...',
  // Past a lexeme's 256 positions, and past position 16,383, where to_tsvector clamps.
  Array.from({ length: 300 }, () => 'repeat').join(' '),
  Array.from({ length: 17_000 }, (_, i) => (i % 3 === 0 ? 'alpha' : i % 3 === 1 ? `word${i % 50}` : 'omega')).join(' ')
]

for (const backend of backends()) {
  describe(`search terms stored as a ready tsvector (${backend.name})`, () => {
    let store: TestStore
    before(async () => {
      store = await backend.create()
    })
    after(() => store.drop())

    for (const [i, text] of TEXTS.entries()) {
      test(`text ${i}: the same lexemes and positions as to_tsvector`, async () => {
        const terms = searchTerms(text).join(' ')
        const { rows } = await store.db.query<{ ours: string; theirs: string }>(
          "SELECT $1::tsvector::text AS ours, to_tsvector('simple', $2)::text AS theirs",
          [tsvectorLiteral(terms), terms]
        )
        assert.equal(rows[0]!.ours, rows[0]!.theirs)
      })
    }
  })
}

test('the literal lists each term once with its positions, quoting what needs it', () => {
  assert.equal(tsvectorLiteral('ledger export ledger'), "'ledger':1,3 'export':2")
  assert.equal(tsvectorLiteral(''), '')
  assert.equal(tsvectorLiteral("o'brien back\\slash"), "'o''brien':1 'back\\\\slash':2")
})
