import assert from 'node:assert/strict'
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, test } from 'node:test'
import { monitorEventLoopDelay } from 'node:perf_hooks'
import { LocalEmbedder, type LocalEmbedderOptions } from '../../src/embedder/local-embedder.js'
import { loadLocalModel, LocalModelError } from '../../src/embedder/local-model.js'
import { startModelHub, type ModelHub } from '../support/model-hub.js'
import { freePort } from '../support/sage-process.js'
import { TEST_MODEL_DIMENSION, writeTestModel, type TestModel } from '../support/test-model.js'

const MODEL_ID = 'sage-tests/tiny-embedder'

const dot = (a: readonly number[], b: readonly number[]) => a.reduce((sum, x, i) => sum + x * b[i]!, 0)
const norm = (a: readonly number[]) => Math.sqrt(dot(a, a))
const close = (a: readonly number[], b: readonly number[]) => a.length === b.length && a.every((x, i) => Math.abs(x - b[i]!) < 1e-6)

/** Prose of the model's own words, `words` long, different for each `seed`. */
function prose(seed: number, words: number): string {
  const vocabulary = 'rotate the api keys monthly deploy on friday ledger export uses keyset pagination postgres is slow cache in redis tests check'.split(' ')
  return Array.from({ length: words }, (_, i) => vocabulary[(seed * 7 + i * 13) % vocabulary.length]).join(' ')
}

describe('LocalEmbedder', () => {
  let work: string
  let model: TestModel
  const open: LocalEmbedder[] = []
  const options = (overrides: Partial<LocalEmbedderOptions> = {}): LocalEmbedderOptions => ({
    model: model.dir,
    cacheDir: join(work, 'cache'),
    hubUrl: 'http://127.0.0.1:1',
    allowDownload: false,
    dtype: 'fp32',
    pooling: 'mean',
    threads: 1,
    batchSize: 8,
    ...overrides
  })
  const load = async (overrides: Partial<LocalEmbedderOptions> = {}) => {
    const embedder = await LocalEmbedder.load(options(overrides))
    open.push(embedder)
    return embedder
  }

  before(async () => {
    work = await mkdtemp(join(tmpdir(), 'sage-local-embedder-'))
    model = await writeTestModel(join(work, 'model'))
  })
  after(async () => {
    await Promise.all(open.map((embedder) => embedder.close()))
    await rm(work, { recursive: true, force: true })
  })

  test('a model in a folder: vectors of its dimension, unit length, deterministic, and the id names the model', async () => {
    const embedder = await load()
    assert.equal(embedder.dimension, TEST_MODEL_DIMENSION)
    assert.equal(embedder.kind, 'semantic')
    assert.equal(embedder.id, `local:${model.dir}:fp32:mean/${TEST_MODEL_DIMENSION}`)
    const [first, again] = await embedder.embed(['Rotate the API keys monthly', 'Rotate the API keys monthly'])
    assert.equal(first!.length, TEST_MODEL_DIMENSION)
    assert.ok(Math.abs(norm(first!) - 1) < 1e-6, `norm ${norm(first!)}`)
    assert.deepEqual(first, again)
    const other = await load()
    assert.deepEqual((await other.embed(['Rotate the API keys monthly']))[0], first)
  })

  test('meaning, not words: a paraphrase is closer than a text sharing a word with it', async () => {
    const embedder = await load()
    const [original, paraphrase, unrelated] = await embedder.embed(['rotate the API keys monthly', 'how often do we renew credentials', 'the ledger export is slow'])
    assert.ok(dot(original!, paraphrase!) > 0.8, `paraphrase ${dot(original!, paraphrase!)}`)
    assert.ok(dot(original!, unrelated!) < 0.3, `unrelated ${dot(original!, unrelated!)}`)
  })

  test('a batch gives the vectors of single calls, in input order, across several model runs', async () => {
    const embedder = await load({ batchSize: 3 })
    const texts = Array.from({ length: 20 }, (_, i) => prose(i, 1 + ((i * 5) % 17)))
    const batch = await embedder.embed(texts)
    assert.equal(batch.length, texts.length)
    for (const [i, text] of texts.entries()) assert.ok(close(batch[i]!, (await embedder.embed([text]))[0]!), `text ${i} differs`)
  })

  test('a call with few texts is served before a large one that came first', async () => {
    const embedder = await load({ batchSize: 4 })
    const finished: string[] = []
    const large = embedder.embed(Array.from({ length: 400 }, (_, i) => prose(i, 60))).then(() => finished.push('large'))
    const small = embedder.embed(['deploy on friday']).then(() => finished.push('small'))
    await Promise.all([large, small])
    assert.deepEqual(finished, ['small', 'large'])
  })

  test('an aborted call rejects at once; the others it waited with still finish', async () => {
    const embedder = await load({ batchSize: 4 })
    const controller = new AbortController()
    const kept = embedder.embed(Array.from({ length: 100 }, (_, i) => prose(i, 40)))
    const dropped = embedder.embed(Array.from({ length: 100 }, (_, i) => prose(i + 1, 40)), controller.signal)
    controller.abort(new Error('caller gave up'))
    await assert.rejects(dropped, { name: 'EmbedderError', retryable: true })
    assert.equal((await kept).length, 100)
    await assert.rejects(embedder.embed(['x'], AbortSignal.abort()), { name: 'EmbedderError' })
  })

  test('a closed embedder rejects its waiting and later calls', async () => {
    const embedder = await LocalEmbedder.load(options({ batchSize: 2 }))
    const waiting = assert.rejects(embedder.embed(Array.from({ length: 200 }, (_, i) => prose(i, 40))), /closed/)
    await embedder.close()
    await waiting
    await assert.rejects(embedder.embed(['x']), /closed/)
  })

  test('embedding a large batch leaves the event loop free (p99 delay under 50 ms), unlike the same work in this thread', async () => {
    const texts = Array.from({ length: 3_000 }, (_, i) => prose(i, 120))
    /** This thread's event-loop delay (p99, ms) and busy share while `work` runs. */
    const probe = async (work: () => Promise<unknown>) => {
      const delay = monitorEventLoopDelay({ resolution: 5 })
      const before = performance.eventLoopUtilization()
      delay.enable()
      const started = performance.now()
      await work()
      delay.disable()
      return { p99: delay.percentile(99) / 1e6, busy: performance.eventLoopUtilization(before).utilization, ms: performance.now() - started }
    }
    const embedder = await load({ batchSize: 256 })
    const inWorker = await probe(() => embedder.embed(texts))
    // The same probe with nothing to do for as long: what other processes on a loaded machine already cost a timer.
    const idle = await probe(() => new Promise((resolve) => setTimeout(resolve, inWorker.ms)))
    const limit = 50 + idle.p99
    assert.ok(inWorker.p99 < limit, `p99 event-loop delay ${inWorker.p99.toFixed(1)} ms while the worker embedded (idle: ${idle.p99.toFixed(1)} ms)`)
    assert.ok(inWorker.busy < 0.5, `this thread was busy ${(inWorker.busy * 100).toFixed(0)}% of the time while the worker embedded`)

    // The control: the same batches on this thread hold the loop far longer, so the probe can tell.
    const sameThread = await loadLocalModel(options())
    try {
      const onThisThread = await probe(async () => {
        for (let i = 0; i < texts.length; i += 256) await sameThread.embed(texts.slice(i, i + 256))
      })
      assert.ok(onThisThread.p99 >= limit, `on this thread the p99 delay was only ${onThisThread.p99.toFixed(1)} ms: the batch is too light to tell`)
      assert.ok(onThisThread.busy > 0.9, `on this thread the loop was busy only ${(onThisThread.busy * 100).toFixed(0)}% of the time`)
    } finally {
      await sameThread.dispose()
    }
  })

  test('a folder without a model, or with a broken one, fails the load naming EMBEDDING_MODEL and the way out', async () => {
    await assert.rejects(load({ model: join(work, 'nothing-here') }), (error: Error) => {
      assert.ok(error instanceof LocalModelError)
      assert.match(error.message, /EMBEDDING_MODEL=.*nothing-here: no model in .*config\.json is missing/)
      assert.match(error.message, /EMBEDDING_PROVIDER/)
      return true
    })
    const broken = await writeTestModel(join(work, 'broken'))
    await writeFile(join(broken.dir, 'onnx/model.onnx'), 'not an onnx model')
    await assert.rejects(load({ model: broken.dir }), /EMBEDDING_MODEL=.*broken could not be loaded: .*EMBEDDING_PROVIDER/)
    const partial = await writeTestModel(join(work, 'partial'))
    await rm(join(partial.dir, 'tokenizer.json'))
    await assert.rejects(load({ model: partial.dir }), /EMBEDDING_MODEL=.*partial could not be loaded/)
  })

  test('a text the model fails on fails its own call only; the worker goes on embedding the others', async () => {
    const failing = await writeTestModel(join(work, 'failing'), { missingRows: 2 })
    const embedder = await load({ model: failing.dir })
    const good = embedder.embed(['rotate the api keys'])
    await assert.rejects(embedder.embed(['we use it']), (error: Error) => {
      assert.equal(error.name, 'EmbedderError')
      assert.match(error.message, new RegExp(`${embedder.id.replace(/[.]/g, '\\.')} failed to embed: `))
      return true
    })
    assert.equal((await good).length, 1)
    assert.equal((await embedder.embed(['deploy on friday']))[0]!.length, TEST_MODEL_DIMENSION)
  })

  test('EMBEDDING_DIMENSIONS other than the model\'s fails the load', async () => {
    await assert.rejects(load({ dimension: 384 }), /EMBEDDING_DIMENSIONS=384, but EMBEDDING_MODEL=.* makes vectors of 24/)
  })

  describe('from a model hub', () => {
    let hub: ModelHub
    before(async () => {
      hub = await startModelHub({ [MODEL_ID]: model.dir })
    })
    after(() => hub.close())

    test('a model not in the cache is never downloaded unasked: the load fails saying how to get it', async () => {
      const cacheDir = join(work, 'empty-cache')
      await assert.rejects(load({ model: MODEL_ID, cacheDir, hubUrl: hub.url }), (error: Error) => {
        assert.ok(error instanceof LocalModelError)
        assert.match(error.message, new RegExp(`EMBEDDING_MODEL=${MODEL_ID} \\(fp32 weights\\) is not in the model cache`))
        assert.match(error.message, new RegExp(`sage-memory models pull ${MODEL_ID}`))
        assert.match(error.message, /EMBEDDING_LOCAL_DOWNLOAD=true/)
        return true
      })
      assert.equal(hub.requests.length, 0)
    })

    test('downloaded once into the cache, then loaded from it with the hub gone', async () => {
      const cacheDir = join(work, 'hub-cache')
      const hubOptions = { model: MODEL_ID, cacheDir, hubUrl: hub.url }
      const downloaded = await load({ ...hubOptions, allowDownload: true })
      assert.deepEqual(hub.downloads().sort(), model.files.map((file) => `/${MODEL_ID}/resolve/main/${file}`).sort())
      assert.deepEqual((await readdir(join(cacheDir, MODEL_ID))).sort(), ['config.json', 'onnx', 'tokenizer.json', 'tokenizer_config.json'])
      assert.equal(downloaded.id, `local:${MODEL_ID}:fp32:mean/${TEST_MODEL_DIMENSION}`)

      const seen = hub.requests.length
      const again = await load({ ...hubOptions, allowDownload: true })
      assert.equal(hub.requests.length, seen, 'a cached model is not asked for again, even with downloads allowed')
      await hub.close()
      const offline = await load(hubOptions)
      const fromFolder = await load()
      const text = ['the ledger export uses keyset pagination']
      assert.deepEqual(await offline.embed(text), await fromFolder.embed(text))
      assert.deepEqual(await again.embed(text), await fromFolder.embed(text))
      hub = await startModelHub({ [MODEL_ID]: model.dir })
    })

    test('a model the hub does not have, or a hub that is down, fails the load with what happened', async () => {
      const cacheDir = join(work, 'missing-cache')
      await assert.rejects(load({ model: 'sage-tests/no-such-model', cacheDir, hubUrl: hub.url, allowDownload: true }), /EMBEDDING_MODEL=sage-tests\/no-such-model: http:\/\/127\.0\.0\.1:\d+ has no such model/)
      const down = `http://127.0.0.1:${await freePort()}`
      await assert.rejects(
        load({ model: MODEL_ID, cacheDir, hubUrl: down, allowDownload: true }),
        new RegExp(`EMBEDDING_MODEL=sage-tests/tiny-embedder could not be downloaded from ${down}: .*ECONNREFUSED.*EMBEDDING_LOCAL_HUB_URL`)
      )
    })
  })
})
