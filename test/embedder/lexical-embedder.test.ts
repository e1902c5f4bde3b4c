import { describe, test } from 'node:test'
import assert from 'node:assert/strict'
import fc from 'fast-check'
import { LexicalEmbedder } from '../../src/embedder/lexical-embedder.js'
import { tokenize } from '../../src/text/tokenize.js'

const norm = (vector: number[]): number => Math.sqrt(vector.reduce((sum, value) => sum + value * value, 0))
const cosine = (a: number[], b: number[]): number => a.reduce((sum, value, i) => sum + value * (b[i] as number), 0)

const embedOne = async (embedder: LexicalEmbedder, text: string): Promise<number[]> => {
  const [vector] = await embedder.embed([text])
  assert.ok(vector)
  return vector
}

/** The query should sit clearly closer to the text sharing its words than to the unrelated one. */
const assertCloser = async (query: string, related: string, unrelated: string): Promise<void> => {
  const embedder = new LexicalEmbedder()
  const [q, r, u] = await embedder.embed([query, related, unrelated])
  assert.ok(q && r && u)
  const near = cosine(q, r)
  const far = cosine(q, u)
  assert.ok(near > 0.25, `cosine to related text ${near.toFixed(3)} should be > 0.25`)
  assert.ok(near > far + 0.2, `related ${near.toFixed(3)} should beat unrelated ${far.toFixed(3)} clearly`)
}

describe('LexicalEmbedder', () => {
  test('defaults to 384 dimensions and names them in its id', async () => {
    const embedder = new LexicalEmbedder()
    assert.equal(embedder.dimension, 384)
    assert.equal(embedder.id, 'lexical-v1/384')
    assert.equal((await embedOne(embedder, 'ledger export')).length, 384)
  })

  test('honours a chosen dimension', async () => {
    const embedder = new LexicalEmbedder({ dimension: 64 })
    assert.equal(embedder.id, 'lexical-v1/64')
    assert.equal((await embedOne(embedder, 'ledger export')).length, 64)
  })

  test('rejects a dimension that is not a positive integer pgvector can store', () => {
    for (const dimension of [0, -1, 1.5, Number.NaN, 16_001]) {
      assert.throws(() => new LexicalEmbedder({ dimension }), RangeError, String(dimension))
    }
  })

  test('is deterministic across calls and instances', async () => {
    const text = 'Switch ledgerExport to cursor pagination; 分页查询 too'
    const first = await embedOne(new LexicalEmbedder(), text)
    const embedder = new LexicalEmbedder()
    assert.deepEqual(await embedOne(embedder, text), first)
    await embedder.embed(['something else entirely', '完全不同的内容'])
    assert.deepEqual(await embedOne(embedder, text), first)
  })

  test('returns one vector per text in input order, the same as one at a time', async () => {
    const embedder = new LexicalEmbedder()
    const texts = ['ledger export', '分页查询', '', 'HTTPServer']
    const batch = await embedder.embed(texts)
    assert.equal(batch.length, texts.length)
    for (const [i, text] of texts.entries()) assert.deepEqual(batch[i], await embedOne(embedder, text))
    assert.deepEqual(await embedder.embed([]), [])
  })

  test('terms split beforehand give the vectors the text gives', async () => {
    const embedder = new LexicalEmbedder()
    const texts = ['Switch ledgerExport to cursor pagination; 分页查询 too', '', '!!!', 'the the the']
    const vectors = await embedder.embedTokenized(texts, texts.map((text, i) => (i === 1 ? undefined : tokenize(text))))
    assert.deepEqual(vectors, await embedder.embed(texts))
  })

  test('every vector is unit length with finite entries, whatever the text', async () => {
    const embedder = new LexicalEmbedder({ dimension: 32 })
    const codeUnits = fc.array(fc.integer({ min: 0, max: 0xffff }), { maxLength: 60 }).map((units) => String.fromCharCode(...units))
    await fc.assert(
      fc.asyncProperty(fc.oneof(fc.string({ unit: 'binary', maxLength: 60 }), codeUnits), async (text) => {
        const vector = await embedOne(embedder, text)
        assert.equal(vector.length, 32)
        assert.ok(vector.every(Number.isFinite))
        assert.ok(Math.abs(norm(vector) - 1) < 1e-9, `norm ${norm(vector)} for ${JSON.stringify(text)}`)
      }),
      { numRuns: 1000 }
    )
  })

  test('stays unit length when colliding features cancel out', async () => {
    // One or two dimensions force every feature to collide, so opposite signs cancel for many texts.
    const pairs = ['分页 查询', '账本 导出', '缓存 队列', '日志 监控', '锁 事务', 'ab cd', 'x y', '分页查询']
    for (const dimension of [1, 2]) {
      const vectors = await new LexicalEmbedder({ dimension }).embed(pairs)
      for (const [i, vector] of vectors.entries()) {
        assert.ok(Math.abs(norm(vector) - 1) < 1e-9, `${pairs[i]} at ${dimension}: ${JSON.stringify(vector)}`)
      }
    }
  })

  test('text without terms still gets a unit vector, and different punctuation a different one', async () => {
    const embedder = new LexicalEmbedder()
    const texts = ['', '!!!', '?', '   ', '\u0000\u0001', '\ud800', '—…—', 'привет мир']
    const vectors = await embedder.embed(texts)
    for (const [i, vector] of vectors.entries()) {
      assert.ok(Math.abs(norm(vector) - 1) < 1e-9, JSON.stringify(texts[i]))
    }
    const [bang, question] = vectors.slice(1, 3)
    assert.ok(bang && question)
    assert.notDeepEqual(bang, question)
  })

  test('a text sharing English words is closer than an unrelated one', async () => {
    await assertCloser(
      'Switch the ledger export to cursor pagination',
      'pagination of ledger exports is slow',
      'The cat slept on the warm windowsill all afternoon'
    )
  })

  test('a text sharing Chinese words is closer than an unrelated one', async () => {
    await assertCloser('分页查询', '账本查询改成分页', '今天天气很好我们去公园散步')
  })

  test('an identifier is close to its words in prose', async () => {
    await assertCloser('ledgerExport', 'the ledger export', 'database connection pool size')
    await assertCloser('ERR_CONN_RESET', 'the connection was reset with an error', 'render the sidebar in dark mode')
  })

  test('3-grams tolerate a typo', async () => {
    await assertCloser('paginaton bug', 'pagination bug', 'memory leak')
    const embedder = new LexicalEmbedder()
    const [typo, right, other] = await embedder.embed(['paginaton', 'pagination', 'serialization'])
    assert.ok(typo && right && other)
    assert.ok(cosine(typo, right) > cosine(typo, other) + 0.15, `${cosine(typo, right)} vs ${cosine(typo, other)}`)
  })

  test('rejects when the signal is already aborted', async () => {
    const controller = new AbortController()
    controller.abort(new Error('stop'))
    await assert.rejects(new LexicalEmbedder().embed(['ledger'], controller.signal), /stop/)
  })
})
