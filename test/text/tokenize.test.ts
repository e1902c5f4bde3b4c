import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { PGlite } from '@electric-sql/pglite'
import fc from 'fast-check'
import { isCjkCodePoint, MAX_TERM_LENGTH, tokenize, uniqueTerms } from '../../src/text/tokenize.js'

/** What `to_tsquery('simple', …)` takes as a plain operand: no punctuation, quotes or operators, never empty. */
const TSQUERY_SAFE = /^[a-z0-9]+$|^[\p{Script=Han}\p{Script=Hiragana}\p{Script=Katakana}\p{Script=Hangul}ー]+$/u

/** Any UTF-16 code units, lone surrogates and control characters included. */
const codeUnits = fc.array(fc.integer({ min: 0, max: 0xffff }), { maxLength: 80 }).map((units) => String.fromCharCode(...units))
const anyText = fc.oneof(fc.string({ unit: 'binary', maxLength: 80 }), codeUnits, fc.string({ unit: 'grapheme-ascii', maxLength: 80 }))

const shared = (a: string, b: string): string[] => {
  const other = new Set(tokenize(b))
  return uniqueTerms(a).filter((term) => other.has(term))
}

describe('tokenize: identifiers', () => {
  test('splits camelCase and adds the compound', () => {
    assert.deepEqual(tokenize('ledgerExport'), ['ledger', 'export', 'ledgerexport'])
  })

  test('splits SCREAMING_SNAKE_CASE and adds the compound', () => {
    assert.deepEqual(tokenize('ERR_CONN_RESET'), ['err', 'conn', 'reset', 'errconnreset'])
  })

  test('splits a path into its names without a compound', () => {
    assert.deepEqual(tokenize('src/export/ledger.ts'), ['src', 'export', 'ledger', 'ts'])
  })

  test('splits an acronym from the word after it', () => {
    assert.deepEqual(tokenize('HTTPServer'), ['http', 'server', 'httpserver'])
    assert.deepEqual(tokenize('XMLHttpRequest'), ['xml', 'http', 'request', 'xmlhttprequest'])
  })

  test('keeps numbers and letters-with-digits whole', () => {
    assert.deepEqual(tokenize('port 5000 on v2 utf8'), ['port', '5000', 'v2', 'utf8'])
    assert.deepEqual(tokenize('Base64Encode'), ['base64', 'encod', 'base64encod'])
    assert.deepEqual(tokenize('HTTP2Server'), ['http2', 'server', 'http2server'])
  })

  test('a plural acronym stays one word', () => {
    assert.deepEqual(tokenize('APIs URLs'), ['api', 'url'])
    assert.deepEqual(tokenize('myIDsMap'), ['my', 'id', 'map', 'myidmap'])
  })

  test('kebab-case joins like snake_case', () => {
    assert.deepEqual(tokenize('--dry-run'), ['dry', 'run', 'dryrun'])
  })

  test('an upper-case UUID and a lower-case one meet on the compound', () => {
    const upper = tokenize('550E8400-E29B-41D4-A716-446655440000')
    const lower = tokenize('550e8400-e29b-41d4-a716-446655440000')
    assert.equal(upper.at(-1), '550e8400e29b41d4a716446655440000')
    assert.equal(lower.at(-1), upper.at(-1))
  })

  test('every spelling of an identifier yields the same parts and compound', () => {
    const spellings = ['ledgerExports', 'LedgerExport', 'ledger_export', 'LEDGER_EXPORT', 'ledger-export']
    for (const spelling of spellings) assert.deepEqual(tokenize(spelling), ['ledger', 'export', 'ledgerexport'], spelling)
    assert.deepEqual(tokenize('paginatedResults'), tokenize('paginate_result'))
  })

  test('the compound is the stemmed parts joined, so the prose words reach every part', () => {
    const word = fc.stringMatching(/^[a-z]{2,9}$/)
    fc.assert(
      fc.property(fc.array(word, { minLength: 2, maxLength: 4 }), (words) => {
        const camel = words.map((w, i) => (i === 0 ? w : w[0]?.toUpperCase() + w.slice(1))).join('')
        const expectedParts = words.map((w) => tokenize(`x.${w}`)[1])
        const expected = [...expectedParts, expectedParts.join('')]
        for (const spelling of [camel, words.join('_'), words.join('-'), words.join('_').toUpperCase()]) {
          assert.deepEqual(tokenize(spelling), expected, spelling)
        }
      })
    )
  })

  test('an identifier shares its parts with the same words in prose', () => {
    assert.deepEqual(shared('ledgerExport', 'the ledger export'), ['ledger', 'export'])
    assert.deepEqual(shared('paginatedResults', 'paginating the results'), ['pagin', 'result'])
  })
})

describe('tokenize: English', () => {
  test('stems so the forms of a word meet', () => {
    const [first, ...rest] = ['paginating', 'pagination', 'paginate', 'paginated'].map((w) => tokenize(w))
    for (const terms of rest) assert.deepEqual(terms, first)
    assert.deepEqual(tokenize('exports exported exporting'), ['export', 'export', 'export'])
  })

  test('drops stop words from prose, capitalised or not', () => {
    assert.deepEqual(tokenize('The ledger is exported to a file'), ['ledger', 'export', 'file'])
  })

  test('keeps stop words that are part of an identifier, path or member access', () => {
    assert.deepEqual(tokenize('is_valid'), ['is', 'valid', 'isvalid'])
    assert.deepEqual(tokenize('getTheValue'), ['get', 'the', 'valu', 'getthevalu'])
    assert.deepEqual(tokenize('this.state'), ['thi', 'state'])
    assert.deepEqual(tokenize('src/in/out'), ['src', 'in', 'out'])
    assert.deepEqual(tokenize('the end of the.'), ['end'])
  })

  test('an apostrophe inside a word does not split it, and a possessive goes', () => {
    assert.deepEqual(tokenize("the ledger's export, it's done, don't retry"), ['ledger', 'export', 'done', 'dont', 'retri'])
    assert.deepEqual(tokenize('the user’s file'), ['user', 'file'])
    assert.deepEqual(tokenize("x = 'a' + 'b'"), ['x', 'b'])
  })

  test('folds accents and full-width letters to ASCII', () => {
    assert.deepEqual(tokenize('Café Straße naïve'), ['cafe', 'strass', 'naiv'])
    assert.deepEqual(tokenize('ＬｅｄｇｅｒＥｘｐｏｒｔ'), ['ledger', 'export', 'ledgerexport'])
  })

  test('drops terms longer than MAX_TERM_LENGTH but keeps a SHA-256 and the parts of a long identifier', () => {
    const sha = 'a'.repeat(64)
    assert.deepEqual(tokenize(sha), [sha])
    assert.deepEqual(tokenize('b'.repeat(MAX_TERM_LENGTH + 1)), [])
    const long = 'someVery' + 'Long'.repeat(20) + 'Name'
    const terms = tokenize(long)
    assert.ok(terms.includes('name') && terms.includes('long'))
    assert.ok(terms.every((term) => term.length <= MAX_TERM_LENGTH))
  })
})

describe('tokenize: CJK', () => {
  test('emits character bigrams of a Chinese run', () => {
    assert.deepEqual(tokenize('分页查询'), ['分页', '页查', '查询'])
  })

  test('a Chinese query meets a stored text through shared bigrams', () => {
    assert.deepEqual(shared('分页查询', '账本查询改成分页'), ['分页', '查询'])
    assert.deepEqual(shared('分页查询', '今天天气很好'), [])
  })

  test('a one-character run is its own term', () => {
    assert.deepEqual(tokenize('用Redis缓存'), ['用', 'redi', '缓存'])
  })

  test('Japanese kana and kanji, including the long vowel mark, form one run', () => {
    assert.deepEqual(tokenize('ページを検索'), ['ペー', 'ージ', 'ジを', 'を検', '検索'])
  })

  test('Korean syllable blocks form bigrams per word', () => {
    assert.deepEqual(tokenize('데이터베이스 연결 이'), ['데이', '이터', '터베', '베이', '이스', '연결', '이'])
  })

  test('CJK punctuation ends a run', () => {
    assert.deepEqual(tokenize('分页。查询、导出'), ['分页', '查询', '导出'])
  })

  test('characters outside the Basic Multilingual Plane are bigrammed whole', () => {
    assert.deepEqual(tokenize('𠀀𠀁𠀂'), ['𠀀𠀁', '𠀁𠀂'])
  })

  test('isCjkCodePoint accepts only Han, kana and Hangul letters', () => {
    for (let cp = 0; cp <= 0x10ffff; cp++) {
      if (!isCjkCodePoint(cp)) continue
      assert.match(String.fromCodePoint(cp), TSQUERY_SAFE, cp.toString(16))
      assert.match(String.fromCodePoint(cp), /^[\p{L}\p{Nl}]$/u, cp.toString(16))
    }
    assert.equal(isCjkCodePoint('、'.codePointAt(0) as number), false)
    assert.equal(isCjkCodePoint('⺈'.codePointAt(0) as number), false)
    assert.equal(isCjkCodePoint('ー'.codePointAt(0) as number), true)
  })
})

describe('tokenize: hostile input', () => {
  test('NUL, control characters and lone surrogates separate words without throwing', () => {
    assert.deepEqual(tokenize('ledger\u0000export\u0007file\u001bpath'), ['ledger', 'export', 'file', 'path'])
    assert.deepEqual(tokenize('\ud800ledger\udfffexport\ud83d'), ['ledger', 'export'])
    assert.deepEqual(tokenize('\ud800\udc00\ufffe\uffff'), [])
    assert.deepEqual(tokenize(''), [])
    assert.deepEqual(tokenize('!!! ... ---'), [])
  })

  test('every term of any text is a non-empty tsquery-safe run', () => {
    fc.assert(
      fc.property(anyText, (text) => {
        for (const term of tokenize(text)) assert.match(term, TSQUERY_SAFE, JSON.stringify({ text, term }))
      }),
      { numRuns: 2000 }
    )
  })

  test('gives the same terms on every call (no state leaks between calls)', () => {
    fc.assert(
      fc.property(anyText, anyText, (a, b) => {
        const first = tokenize(a)
        tokenize(b)
        assert.deepEqual(tokenize(a), first)
      })
    )
  })

  test('100,000 characters of any shape tokenize in linear time', () => {
    const shapes = {
      prose: 'The ledger export switched to cursor pagination. '.repeat(2000),
      'one word': 'a'.repeat(100_000),
      'one identifier': 'a_'.repeat(50_000),
      'camel humps': 'aB'.repeat(50_000),
      'acronym run': 'A'.repeat(100_000),
      'accented word': 'é'.repeat(100_000),
      'apostrophes': "a'".repeat(50_000),
      'Chinese run': '账本查询改成分页'.repeat(12_500),
      'alternating scripts': 'a分'.repeat(50_000),
      'path punctuation': 'a.'.repeat(50_000),
      'surrogates': '\ud800'.repeat(100_000)
    }
    for (const [shape, text] of Object.entries(shapes)) {
      const started = performance.now()
      tokenize(text)
      const elapsed = performance.now() - started
      // Quadratic work on 100,000 characters takes seconds; linear takes a few milliseconds.
      assert.ok(elapsed < 500, `${shape}: ${elapsed.toFixed(0)} ms`)
    }
    assert.equal(tokenize('账本'.repeat(50_000)).length, 99_999)
  })
})

describe('tokenize: Postgres full-text search', () => {
  let db: PGlite
  before(async () => {
    db = new PGlite()
    await db.waitReady
  })
  after(() => db.close())

  const lexemes = (text: string): string[] => [...text.matchAll(/'([^']*)'/g)].map((match) => match[1] as string).sort()

  test('Postgres keeps every term as one lexeme on both sides', async () => {
    // ASCII and CJK letters from Unicode versions every Postgres knows; newer ideographs may be dropped by its parser.
    const char = fc.oneof(
      fc.integer({ min: 0x20, max: 0x7e }),
      fc.integer({ min: 0x4e00, max: 0x9fa5 }),
      fc.integer({ min: 0xac00, max: 0xd7a3 }),
      fc.integer({ min: 0x3041, max: 0x30fa })
    )
    const text = fc.array(char, { maxLength: 40 }).map((codes) => String.fromCharCode(...codes))
    await fc.assert(
      fc.asyncProperty(text, async (sample) => {
        const terms = uniqueTerms(sample)
        if (terms.length === 0) return
        const { rows } = await db.query<{ vector: string; query: string }>(
          "SELECT to_tsvector('simple', $1)::text AS vector, to_tsquery('simple', $2)::text AS query",
          [terms.join(' '), terms.join(' | ')]
        )
        const row = rows[0]
        assert.ok(row)
        assert.deepEqual(lexemes(row.vector), [...terms].sort(), `vector of ${JSON.stringify(sample)}`)
        assert.deepEqual(lexemes(row.query), [...terms].sort(), `query of ${JSON.stringify(sample)}`)
      }),
      { numRuns: 200 }
    )
  })

  test('to_tsquery accepts the terms of any text', async () => {
    for (const sample of fc.sample(anyText, 200)) {
      const terms = uniqueTerms(sample)
      if (terms.length === 0) continue
      await db.query("SELECT to_tsquery('simple', $1)", [terms.join(' | ')])
    }
  })

  test('stored text matches a query sharing its words, in English, Chinese and code', async () => {
    const match = async (stored: string, query: string): Promise<boolean> => {
      const { rows } = await db.query<{ hit: boolean }>("SELECT to_tsvector('simple', $1) @@ to_tsquery('simple', $2) AS hit", [
        tokenize(stored).join(' '),
        uniqueTerms(query).join(' | ')
      ])
      return rows[0]?.hit === true
    }
    assert.equal(await match('账本查询改成分页', '分页查询'), true)
    assert.equal(await match('Switched ledgerExport to cursor pagination', 'paginating the ledger export'), true)
    assert.equal(await match('fails with ERR_CONN_RESET', 'connection reset'), true)
    assert.equal(await match('账本查询改成分页', '今天天气很好'), false)
  })
})

describe('uniqueTerms', () => {
  test('keeps the first appearance of each term, in order', () => {
    assert.deepEqual(uniqueTerms('export the ledger, exported ledgers, ledgerExport'), ['export', 'ledger', 'ledgerexport'])
  })
})
