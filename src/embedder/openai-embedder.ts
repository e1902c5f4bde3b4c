import { setTimeout as sleep } from 'node:timers/promises'
import type { Embedder } from './embedder.js'
import { EmbedderError } from './embedder-error.js'
import { backoffDelay, jittered } from '../backoff.js'

export interface OpenAIEmbedderOptions {
  /** Base address of an OpenAI-compatible server (Ollama, vLLM, TEI, OpenAI): `http://host:11434`, `…/v1` or `…/v1/embeddings`. */
  url: string
  model: string
  /** Sent as `Authorization: Bearer <apiKey>` when set and non-empty. */
  apiKey?: string
  /** Length every returned vector must have (EMBEDDING_DIMENSIONS). */
  dimension: number
  /** Send `"dimensions": dimension` in the request, for models that can shorten their output (OpenAI text-embedding-3-*). */
  sendDimensions?: boolean
  /** Deadline of one HTTP attempt. Default 10,000 ms. */
  timeoutMs?: number
  /** Texts per request. Default 64. */
  batchSize?: number
  /** Requests in flight at once for one `embed` call. Default 4. */
  concurrency?: number
  /** Retries after the first attempt of a batch, on network errors, timeouts, 429 and 5xx. Default 3. */
  maxRetries?: number
  /** First backoff delay; it doubles each retry, with jitter. Default 200 ms. */
  retryBaseDelayMs?: number
  /** Ceiling of one backoff delay, including a server's `Retry-After`. Default 10,000 ms. */
  maxRetryDelayMs?: number
  fetch?: typeof fetch
}

type Attempt =
  | { ok: true; vectors: number[][] }
  | { ok: false; reason: string; retryable: boolean; status?: number; retryAfterMs?: number; cause?: unknown }

const MAX_ERROR_BODY_CHARS = 500

/** Embeds text through `POST /v1/embeddings` of an OpenAI-compatible server, in bounded concurrent batches with retries. */
export class OpenAIEmbedder implements Embedder {
  readonly id: string
  readonly kind = 'semantic'
  readonly dimension: number
  /** The normalised embeddings address requests go to (no credentials). */
  readonly endpoint: string

  readonly #model: string
  readonly #apiKey: string | undefined
  readonly #sendDimensions: boolean
  readonly #timeoutMs: number
  readonly #batchSize: number
  readonly #concurrency: number
  readonly #maxRetries: number
  readonly #retryBaseDelayMs: number
  readonly #maxRetryDelayMs: number
  readonly #fetch: typeof fetch

  constructor(options: OpenAIEmbedderOptions) {
    if (options.model.trim() === '') throw new TypeError('OpenAIEmbedder: model must not be empty')
    this.dimension = positiveInteger('dimension', options.dimension)
    this.#timeoutMs = positiveInteger('timeoutMs', options.timeoutMs ?? 10_000)
    this.#batchSize = positiveInteger('batchSize', options.batchSize ?? 64)
    this.#concurrency = positiveInteger('concurrency', options.concurrency ?? 4)
    this.#maxRetries = nonNegativeInteger('maxRetries', options.maxRetries ?? 3)
    this.#retryBaseDelayMs = nonNegativeInteger('retryBaseDelayMs', options.retryBaseDelayMs ?? 200)
    this.#maxRetryDelayMs = nonNegativeInteger('maxRetryDelayMs', options.maxRetryDelayMs ?? 10_000)
    this.endpoint = embeddingsEndpoint(options.url)
    this.#model = options.model
    this.#apiKey = options.apiKey === '' ? undefined : options.apiKey
    this.#sendDimensions = options.sendDimensions ?? false
    this.#fetch = options.fetch ?? fetch
    this.id = `openai:${options.model}/${this.dimension}`
  }

  async embed(texts: readonly string[], signal?: AbortSignal): Promise<number[][]> {
    if (texts.length === 0) return []
    if (signal?.aborted) throw this.#aborted(signal)

    const batches: string[][] = []
    for (let start = 0; start < texts.length; start += this.#batchSize) {
      batches.push(texts.slice(start, start + this.#batchSize))
    }
    const results: number[][][] = new Array<number[][]>(batches.length)
    // Stops sibling batches once one batch has failed, since the whole call fails anyway.
    const stopSiblings = new AbortController()
    const batchSignal = signal ? AbortSignal.any([signal, stopSiblings.signal]) : stopSiblings.signal

    let nextBatch = 0
    const worker = async (): Promise<void> => {
      while (nextBatch < batches.length) {
        const index = nextBatch++
        results[index] = await this.#embedBatch(batches[index] ?? [], batchSignal, signal)
      }
    }
    try {
      await Promise.all(Array.from({ length: Math.min(this.#concurrency, batches.length) }, worker))
    } catch (error) {
      stopSiblings.abort()
      throw error
    }
    return results.flat()
  }

  async #embedBatch(inputs: string[], signal: AbortSignal, callerSignal: AbortSignal | undefined): Promise<number[][]> {
    for (let attempt = 0; ; attempt++) {
      if (signal.aborted) throw this.#aborted(callerSignal ?? signal)
      const result = await this.#attempt(inputs, signal)
      if (result.ok) return result.vectors
      if (signal.aborted) throw this.#aborted(callerSignal ?? signal)

      if (!result.retryable || attempt >= this.#maxRetries) {
        const attempts = attempt + 1
        const after = attempts > 1 ? ` after ${attempts} attempts` : ''
        throw new EmbedderError(`Embedding request to ${this.endpoint} failed${after}: ${this.#redact(result.reason)}`, {
          retryable: result.retryable,
          status: result.status,
          cause: result.cause
        })
      }
      try {
        await sleep(result.retryAfterMs ?? this.#backoffMs(attempt), undefined, { signal })
      } catch {
        throw this.#aborted(callerSignal ?? signal)
      }
    }
  }

  async #attempt(inputs: string[], signal: AbortSignal): Promise<Attempt> {
    const timeout = AbortSignal.timeout(this.#timeoutMs)
    const headers: Record<string, string> = { 'content-type': 'application/json', accept: 'application/json' }
    if (this.#apiKey !== undefined) headers.authorization = `Bearer ${this.#apiKey}`
    const body: Record<string, unknown> = { model: this.#model, input: inputs }
    if (this.#sendDimensions) body.dimensions = this.dimension

    let status: number
    let text: string
    let retryAfter: string | null
    try {
      const response = await this.#fetch(this.endpoint, {
        method: 'POST',
        headers,
        body: JSON.stringify(body),
        signal: AbortSignal.any([signal, timeout])
      })
      status = response.status
      retryAfter = response.headers.get('retry-after')
      text = await response.text()
    } catch (error) {
      if (timeout.aborted && !signal.aborted) {
        return { ok: false, reason: `no answer within ${this.#timeoutMs} ms (timeoutMs)`, retryable: true, cause: error }
      }
      return { ok: false, reason: `network error: ${networkReason(error)}`, retryable: true, cause: error }
    }

    if (status < 200 || status >= 300) {
      const retryable = status === 429 || status >= 500
      const retryAfterMs = status === 429 || status === 503 ? this.#retryAfterMs(retryAfter) : undefined
      return { ok: false, reason: `HTTP ${status}: ${serverMessage(text)}`, retryable, status, retryAfterMs }
    }
    return this.#parse(text, inputs.length, status)
  }

  #parse(text: string, expected: number, status: number): Attempt {
    const fail = (reason: string): Attempt => ({ ok: false, reason, retryable: false, status })
    let payload: unknown
    try {
      payload = JSON.parse(text)
    } catch {
      return fail(`answer is not JSON: ${truncate(text)}`)
    }
    const data = (payload as { data?: unknown } | null)?.data
    if (!Array.isArray(data)) return fail(`answer has no "data" array: ${truncate(text)}`)
    if (data.length !== expected) return fail(`answer has ${data.length} embeddings for ${expected} inputs`)

    const vectors = new Array<number[] | undefined>(expected)
    for (const [position, item] of data.entries()) {
      const { index = position, embedding } = (item ?? {}) as { index?: unknown; embedding?: unknown }
      if (typeof index !== 'number' || !Number.isInteger(index) || index < 0 || index >= expected || vectors[index]) {
        return fail(`answer has an invalid or repeated index ${JSON.stringify(index)}`)
      }
      if (!Array.isArray(embedding) || !embedding.every((value) => typeof value === 'number' && Number.isFinite(value))) {
        return fail(`embedding ${index} is not an array of finite numbers`)
      }
      if (embedding.length !== this.dimension) {
        return fail(
          `model "${this.#model}" returned vectors of length ${embedding.length} but ${this.dimension} were expected; ` +
            `set EMBEDDING_DIMENSIONS=${embedding.length} or choose a model with ${this.dimension} dimensions`
        )
      }
      vectors[index] = normalise(embedding as number[])
    }
    return { ok: true, vectors: vectors as number[][] }
  }

  #backoffMs(attempt: number): number {
    return jittered(backoffDelay(attempt, this.#retryBaseDelayMs, this.#maxRetryDelayMs))
  }

  #retryAfterMs(header: string | null): number | undefined {
    if (header === null || header.trim() === '') return undefined
    const seconds = Number(header)
    const ms = Number.isFinite(seconds) ? seconds * 1000 : Date.parse(header) - Date.now()
    if (Number.isNaN(ms)) return undefined
    return Math.min(this.#maxRetryDelayMs, Math.max(0, ms))
  }

  #aborted(signal: AbortSignal): EmbedderError {
    return new EmbedderError(`Embedding request to ${this.endpoint} was aborted by the caller`, {
      retryable: true,
      cause: signal.reason
    })
  }

  /** A server may echo what it was sent; the key never leaves in an error message. */
  #redact(message: string): string {
    return this.#apiKey === undefined ? message : message.split(this.#apiKey).join('[redacted]')
  }
}

/** `http://h:11434`, `http://h:11434/v1` and `http://h:11434/v1/embeddings` all become `http://h:11434/v1/embeddings`. */
function embeddingsEndpoint(base: string): string {
  let url: URL
  try {
    url = new URL(base.trim())
  } catch {
    throw new TypeError(`OpenAIEmbedder: url ${JSON.stringify(base)} is not an absolute http(s) address`)
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new TypeError(`OpenAIEmbedder: url must start with http:// or https://, got ${url.protocol}`)
  }
  if (url.username !== '' || url.password !== '') {
    throw new TypeError('OpenAIEmbedder: url must not contain credentials; pass the key as apiKey instead')
  }
  const path = url.pathname.replace(/\/+$/, '')
  if (path.endsWith('/embeddings')) url.pathname = path
  else if (path.endsWith('/v1')) url.pathname = `${path}/embeddings`
  else url.pathname = `${path}/v1/embeddings`
  url.hash = ''
  return url.toString()
}

function normalise(vector: number[]): number[] {
  let sumOfSquares = 0
  for (const value of vector) sumOfSquares += value * value
  const norm = Math.sqrt(sumOfSquares)
  // A zero vector has no direction to keep; it stays zero and matches nothing.
  if (norm === 0) return vector
  return vector.map((value) => value / norm)
}

/** The message inside the error shapes of OpenAI (`error.message`), Ollama and TEI (`error`) and vLLM (`message`). */
function serverMessage(body: string): string {
  try {
    const parsed = JSON.parse(body) as { error?: unknown; message?: unknown } | null
    const error = parsed?.error
    if (typeof error === 'string') return truncate(error)
    if (typeof error === 'object' && error !== null && typeof (error as { message?: unknown }).message === 'string') {
      return truncate((error as { message: string }).message)
    }
    if (typeof parsed?.message === 'string') return truncate(parsed.message)
  } catch {
    // Not JSON: a proxy's HTML or plain text page, shown as it is.
  }
  return body.trim() === '' ? '(empty body)' : truncate(body)
}

function networkReason(error: unknown): string {
  const cause = (error as { cause?: { code?: unknown; message?: unknown } } | null)?.cause
  if (cause && typeof cause.message === 'string') return cause.message
  return error instanceof Error ? error.message : String(error)
}

function truncate(text: string): string {
  const flat = text.trim().replace(/\s+/g, ' ')
  return flat.length > MAX_ERROR_BODY_CHARS ? `${flat.slice(0, MAX_ERROR_BODY_CHARS)}…` : flat
}

function positiveInteger(name: string, value: number): number {
  if (!Number.isInteger(value) || value < 1) throw new TypeError(`OpenAIEmbedder: ${name} must be a positive integer, got ${value}`)
  return value
}

function nonNegativeInteger(name: string, value: number): number {
  if (!Number.isInteger(value) || value < 0) throw new TypeError(`OpenAIEmbedder: ${name} must be a non-negative integer, got ${value}`)
  return value
}
