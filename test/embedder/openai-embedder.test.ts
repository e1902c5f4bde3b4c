import { test, describe, before, after, beforeEach } from 'node:test'
import assert from 'node:assert/strict'
import { EmbedderError } from '../../src/embedder/embedder-error.js'
import { OpenAIEmbedder, type OpenAIEmbedderOptions } from '../../src/embedder/openai-embedder.js'
import { deterministicEmbedding, startEmbeddingServer, type EmbeddingServer } from '../support/embedding-server.js'

const DIMENSION = 16

describe('OpenAIEmbedder', () => {
  let server: EmbeddingServer

  before(async () => {
    server = await startEmbeddingServer({ dimension: DIMENSION })
  })
  after(() => server.close())
  beforeEach(() => {
    server.requests.length = 0
    server.setBehaviour({ dimension: DIMENSION, failFirst: 0, failStatus: 503, retryAfterSeconds: undefined, delayMs: 0, down: false })
  })

  const embedder = (options: Partial<OpenAIEmbedderOptions> = {}): OpenAIEmbedder =>
    new OpenAIEmbedder({ url: server.url, model: 'test-model', dimension: DIMENSION, retryBaseDelayMs: 5, maxRetryDelayMs: 50, ...options })

  const rejection = async (promise: Promise<unknown>): Promise<EmbedderError> => {
    try {
      await promise
    } catch (error) {
      assert.ok(error instanceof EmbedderError, `expected an EmbedderError, got ${String(error)}`)
      return error
    }
    assert.fail('expected the promise to reject')
  }

  const norm = (vector: number[]): number => Math.sqrt(vector.reduce((sum, value) => sum + value * value, 0))

  test('id names the model and the dimension', () => {
    assert.equal(embedder().id, `openai:test-model/${DIMENSION}`)
    assert.equal(embedder().dimension, DIMENSION)
  })

  test('an empty input gives [] without a request', async () => {
    assert.deepEqual(await embedder().embed([]), [])
    assert.equal(server.requests.length, 0)
  })

  test('keeps input order across batches and sends batchSize texts per request', async () => {
    const texts = Array.from({ length: 150 }, (_, i) => `memory number ${i} about topic ${i % 7}`)
    const vectors = await embedder({ batchSize: 64 }).embed(texts)

    assert.equal(vectors.length, 150)
    assert.deepEqual(server.requests.map((r) => r.inputs.length).sort((a, b) => a - b), [22, 64, 64])
    assert.deepEqual(server.requests.flatMap((r) => r.inputs).sort(), [...texts].sort())
    for (const [i, text] of texts.entries()) {
      const raw = deterministicEmbedding(text, DIMENSION)
      const expected = raw.map((value) => value / norm(raw))
      const actual = vectors[i] ?? []
      assert.equal(actual.length, DIMENSION)
      actual.forEach((value, d) => assert.ok(Math.abs(value - (expected[d] ?? NaN)) < 1e-12, `text ${i} dim ${d}`))
    }
  })

  test('puts vectors back by index when the server answers out of order', async () => {
    const shuffled: typeof fetch = async (input, init) => {
      const response = await fetch(input, init)
      const body = (await response.json()) as { data: unknown[] }
      body.data.reverse()
      return new Response(JSON.stringify(body), { status: response.status, headers: response.headers })
    }
    const texts = ['alpha', 'beta', 'gamma']
    const vectors = await embedder({ fetch: shuffled }).embed(texts)
    const inOrder = await embedder().embed(texts)
    assert.deepEqual(vectors, inOrder)
    assert.notDeepEqual(vectors[0], vectors[2])
  })

  test('returns unit-length vectors, equal for equal texts', async () => {
    const [a, b, c] = await embedder().embed(['rotate the api keys', 'deploy to staging', 'rotate the api keys'])
    for (const vector of [a, b, c]) assert.ok(Math.abs(norm(vector ?? []) - 1) < 1e-9)
    assert.deepEqual(a, c)
    assert.notDeepEqual(a, b)
  })

  test('the test server puts texts that share words closer than texts that share none', async () => {
    const [query, related, unrelated] = await embedder({ dimension: 384, sendDimensions: true }).embed([
      'rotate the api keys',
      'how to rotate api keys safely',
      'deploy the frontend to staging'
    ])
    const cosine = (a: number[] = [], b: number[] = []): number => a.reduce((sum, value, i) => sum + value * (b[i] ?? 0), 0)
    assert.ok(cosine(query, related) > cosine(query, unrelated) + 0.2, `${cosine(query, related)} vs ${cosine(query, unrelated)}`)
  })

  test('bounds the requests in flight to concurrency', async () => {
    let inFlight = 0
    let peak = 0
    const counting: typeof fetch = async (input, init) => {
      peak = Math.max(peak, ++inFlight)
      try {
        return await fetch(input, init)
      } finally {
        inFlight--
      }
    }
    server.setBehaviour({ delayMs: 20 })
    const texts = Array.from({ length: 10 }, (_, i) => `text ${i}`)
    const vectors = await embedder({ batchSize: 1, concurrency: 3, fetch: counting }).embed(texts)
    assert.equal(vectors.length, 10)
    assert.equal(server.requests.length, 10)
    assert.equal(peak, 3)
  })

  test('sends Authorization only when an apiKey is set, and dimensions only when asked', async () => {
    await embedder().embed(['no key'])
    await embedder({ apiKey: '' }).embed(['empty key'])
    await embedder({ apiKey: 'sk-test-123', sendDimensions: true }).embed(['with key'])
    assert.equal(server.requests[0]?.auth, undefined)
    assert.equal(server.requests[0]?.dimensions, undefined)
    assert.equal(server.requests[1]?.auth, undefined)
    assert.equal(server.requests[2]?.auth, 'Bearer sk-test-123')
    assert.equal(server.requests[2]?.dimensions, DIMENSION)
    assert.equal(server.requests[2]?.model, 'test-model')
  })

  test('retries after 503 and then succeeds', async () => {
    server.setBehaviour({ failFirst: 2, failStatus: 503 })
    const vectors = await embedder({ maxRetries: 3 }).embed(['hello'])
    assert.equal(vectors.length, 1)
    assert.deepEqual(server.requests.map((r) => r.status), [503, 503, 200])
  })

  test('retries after 429 and 500', async () => {
    server.setBehaviour({ failFirst: 1, failStatus: 429 })
    await embedder().embed(['one'])
    server.setBehaviour({ failFirst: 1, failStatus: 500 })
    await embedder().embed(['two'])
    assert.deepEqual(server.requests.map((r) => r.status), [429, 200, 500, 200])
  })

  test('honours Retry-After seconds on 503', async () => {
    server.setBehaviour({ failFirst: 1, failStatus: 503, retryAfterSeconds: 1 })
    const started = performance.now()
    await embedder({ retryBaseDelayMs: 1, maxRetryDelayMs: 5_000 }).embed(['patience'])
    const elapsed = performance.now() - started
    assert.ok(elapsed >= 950, `retried after ${elapsed.toFixed(0)} ms, expected about 1000`)
    assert.equal(server.requests.length, 2)
  })

  test('caps Retry-After at maxRetryDelayMs', async () => {
    server.setBehaviour({ failFirst: 1, failStatus: 429, retryAfterSeconds: 3600 })
    const started = performance.now()
    await embedder({ maxRetryDelayMs: 50 }).embed(['capped'])
    assert.ok(performance.now() - started < 1_000)
    assert.equal(server.requests.length, 2)
  })

  test('gives up after maxRetries with a retryable error naming the endpoint, never the key', async () => {
    server.setBehaviour({ failFirst: 100, failStatus: 503 })
    const error = await rejection(embedder({ maxRetries: 2, apiKey: 'sk-secret-key' }).embed(['x']))
    assert.equal(server.requests.length, 3)
    assert.equal(error.retryable, true)
    assert.equal(error.status, 503)
    assert.match(error.message, new RegExp(`${server.url}/v1/embeddings`))
    assert.match(error.message, /3 attempts/)
    assert.doesNotMatch(error.message, /sk-secret-key/)
  })

  test('fails at once on 400 with the server message and no retry', async () => {
    server.setBehaviour({ failFirst: 5, failStatus: 400, errorMessage: 'input is too long for this model' })
    const error = await rejection(embedder({ maxRetries: 3 }).embed(['x']))
    assert.equal(server.requests.length, 1)
    assert.equal(error.retryable, false)
    assert.equal(error.status, 400)
    assert.match(error.message, /input is too long for this model/)
    assert.match(error.message, /HTTP 400/)
  })

  test('fails at once on 401 and 404, and redacts a key the server echoes', async () => {
    server.setBehaviour({ failFirst: 1, failStatus: 401, errorMessage: 'Incorrect API key provided: sk-echoed-key' })
    const unauthorised = await rejection(embedder({ apiKey: 'sk-echoed-key' }).embed(['x']))
    assert.equal(unauthorised.retryable, false)
    assert.match(unauthorised.message, /Incorrect API key provided: \[redacted\]/)
    assert.doesNotMatch(unauthorised.message, /sk-echoed-key/)

    const notFound = await rejection(embedder({ url: `${server.url}/elsewhere/v1` }).embed(['x']))
    assert.equal(notFound.status, 404)
    assert.equal(notFound.retryable, false)
    assert.equal(server.requests.length, 1)
  })

  test('times out a slow answer quickly, as a retryable error', async () => {
    server.setBehaviour({ delayMs: 5_000 })
    const started = performance.now()
    const error = await rejection(embedder({ timeoutMs: 100, maxRetries: 1 }).embed(['slow']))
    const elapsed = performance.now() - started
    assert.ok(elapsed < 1_000, `took ${elapsed.toFixed(0)} ms`)
    assert.equal(error.retryable, true)
    assert.match(error.message, /no answer within 100 ms/)
    assert.equal(server.requests.length, 2)
  })

  test('retries a server that drops connections, then gives up as retryable', async () => {
    server.setBehaviour({ down: true })
    const error = await rejection(embedder({ maxRetries: 1 }).embed(['x']))
    assert.equal(error.retryable, true)
    assert.match(error.message, /network error/)
    assert.equal(server.requests.length, 2)
    assert.deepEqual(server.requests.map((r) => r.status), [0, 0])
  })

  test('rejects a wrong dimension, naming both numbers and EMBEDDING_DIMENSIONS', async () => {
    server.setBehaviour({ dimension: 10 })
    const error = await rejection(embedder({ maxRetries: 3 }).embed(['x']))
    assert.equal(error.retryable, false)
    assert.equal(server.requests.length, 1)
    assert.match(error.message, /EMBEDDING_DIMENSIONS/)
    assert.match(error.message, /\b10\b/)
    assert.match(error.message, new RegExp(`\\b${DIMENSION}\\b`))
  })

  test('a caller abort stops a request in flight at once', async () => {
    server.setBehaviour({ delayMs: 5_000 })
    const controller = new AbortController()
    const started = performance.now()
    setTimeout(() => controller.abort(), 50)
    const error = await rejection(embedder({ timeoutMs: 10_000, maxRetries: 5 }).embed(['x'], controller.signal))
    assert.ok(performance.now() - started < 1_000)
    assert.match(error.message, /aborted/)
    assert.equal(server.requests.length, 1)
  })

  test('a caller abort stops the backoff between retries', async () => {
    server.setBehaviour({ failFirst: 100, failStatus: 503 })
    const controller = new AbortController()
    const started = performance.now()
    setTimeout(() => controller.abort(), 100)
    const slowBackoff = embedder({ maxRetries: 5, retryBaseDelayMs: 10_000, maxRetryDelayMs: 10_000 })
    const error = await rejection(slowBackoff.embed(['x'], controller.signal))
    assert.ok(performance.now() - started < 1_000)
    assert.match(error.message, /aborted/)
    assert.equal(server.requests.length, 1)
  })

  test('an already aborted signal sends nothing', async () => {
    await rejection(embedder().embed(['x'], AbortSignal.abort()))
    assert.equal(server.requests.length, 0)
  })

  test('one failing batch fails the call at once and aborts its siblings in flight', async () => {
    let siblingSignal: AbortSignal | undefined
    const scripted: typeof fetch = async (_input, init) => {
      const body = JSON.parse(String(init?.body)) as { input: string[] }
      if (body.input[0] === 'fails') return Response.json({ error: { message: 'bad input' } }, { status: 400 })
      siblingSignal = init?.signal ?? undefined
      return new Promise<Response>((_resolve, reject) => init?.signal?.addEventListener('abort', () => reject(init.signal?.reason)))
    }
    const started = performance.now()
    const error = await rejection(embedder({ batchSize: 1, concurrency: 2, fetch: scripted }).embed(['hangs', 'fails']))
    assert.ok(performance.now() - started < 1_000)
    assert.match(error.message, /bad input/)
    assert.equal(siblingSignal?.aborted, true)
  })

  describe('url normalisation', () => {
    const forms = (base: string): string[] => [base, `${base}/`, `${base}/v1`, `${base}/v1/`, `${base}/v1/embeddings`, `${base}/v1/embeddings/`]

    test('the base, /v1 and /v1/embeddings forms all reach the embeddings endpoint', async () => {
      for (const url of forms(server.url)) {
        const client = embedder({ url })
        assert.equal(client.endpoint, `${server.url}/v1/embeddings`, url)
        assert.equal((await client.embed([url])).length, 1)
      }
      assert.equal(server.requests.length, 6)
      assert.ok(server.requests.every((r) => r.status === 200))
    })

    test('keeps a path prefix and a query string', () => {
      assert.equal(embedder({ url: 'https://proxy.example/ollama' }).endpoint, 'https://proxy.example/ollama/v1/embeddings')
      assert.equal(
        embedder({ url: 'https://x.example/openai/v1?api-version=2024-02-01' }).endpoint,
        'https://x.example/openai/v1/embeddings?api-version=2024-02-01'
      )
    })

    test('refuses addresses it cannot use', () => {
      assert.throws(() => embedder({ url: 'localhost:11434' }), /http/)
      assert.throws(() => embedder({ url: 'not a url' }), /absolute http\(s\) address/)
      assert.throws(() => embedder({ url: 'http://user:pw@host:1/v1' }), /credentials/)
    })
  })

  test('refuses invalid options', () => {
    assert.throws(() => embedder({ dimension: 0 }), /dimension/)
    assert.throws(() => embedder({ batchSize: 1.5 }), /batchSize/)
    assert.throws(() => embedder({ maxRetries: -1 }), /maxRetries/)
    assert.throws(() => embedder({ model: ' ' }), /model/)
  })
})
