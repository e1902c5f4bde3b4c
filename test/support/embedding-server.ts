/**
 * A real OpenAI-compatible embedding server on 127.0.0.1 for tests, since no model can be downloaded here.
 *
 * It serves `POST /v1/embeddings` (`{"model", "input": string | string[], "dimensions"?}`) and answers
 * `{"object": "list", "data": [{"object": "embedding", "index", "embedding"}], "model", "usage"}`.
 *
 * Vectors come from `deterministicEmbedding`: one pseudo-random direction per lowercase word plus one for the
 * whole text, summed and deliberately NOT normalised (a client must normalise). Equal texts give equal vectors,
 * different texts give different vectors, and texts that share words are closer (cosine) than texts that share none,
 * so vector recall over it behaves like a crude but honest semantic model.
 *
 * Behaviour can be changed at any time with `setBehaviour`, e.g. to simulate an embedder that is down and comes back:
 *   const server = await startEmbeddingServer({ dimension: 384 })
 *   server.setBehaviour({ down: true })      // every connection is dropped without an answer
 *   server.setBehaviour({ down: false })     // answering again
 *   server.setBehaviour({ failFirst: 2, failStatus: 503, retryAfterSeconds: 1 })  // next 2 requests fail
 *   server.setBehaviour({ dimension: 10 })   // wrong dimension for a client expecting 384
 *   server.setBehaviour({ delayMs: 500 })    // slow answers, to trip a client's timeout
 * Every request reaching the handler is recorded in `requests`, failed and dropped ones included.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { seededRandom } from './seeded-random.js'

export interface EmbeddingServerBehaviour {
  /** Length of the vectors returned. Default 384. A `"dimensions"` field in a request overrides it, as OpenAI does. */
  dimension: number
  /** The next N requests answer `failStatus` instead of vectors. Setting it restarts the count. Default 0. */
  failFirst: number
  /** Status of those failures. Default 503. */
  failStatus: number
  /** Sent as `Retry-After` (seconds) with those failures when set. */
  retryAfterSeconds: number | undefined
  /** Message in the failure's OpenAI-shaped body `{"error": {"message"}}`. */
  errorMessage: string
  /** Wait before answering (failures included). Default 0. */
  delayMs: number
  /** Drop every connection without answering, like a crashed server behind a live port. Default false. */
  down: boolean
}

export interface EmbeddingServerRequest {
  model: string
  inputs: string[]
  /** The `Authorization` header as sent, when there was one. */
  auth?: string
  /** The `"dimensions"` field, when sent. */
  dimensions?: number
  /** Status answered; 0 when the connection was dropped or the client went away first. */
  status: number
}

export interface EmbeddingServer {
  /** Base address, e.g. `http://127.0.0.1:41234` (without `/v1`). */
  url: string
  requests: EmbeddingServerRequest[]
  setBehaviour(behaviour: Partial<EmbeddingServerBehaviour>): void
  close(): Promise<void>
}

export async function startEmbeddingServer(
  options: Partial<Pick<EmbeddingServerBehaviour, 'dimension' | 'failFirst' | 'failStatus' | 'delayMs'>> = {}
): Promise<EmbeddingServer> {
  const behaviour: EmbeddingServerBehaviour = {
    dimension: 384,
    failFirst: 0,
    failStatus: 503,
    retryAfterSeconds: undefined,
    errorMessage: 'the embedding server is failing on purpose',
    delayMs: 0,
    down: false,
    ...options
  }
  let failuresLeft = behaviour.failFirst
  const requests: EmbeddingServerRequest[] = []
  const pendingDelays = new Set<NodeJS.Timeout>()

  const wait = (ms: number): Promise<void> =>
    new Promise((resolve) => {
      if (ms <= 0) return resolve()
      const timer = setTimeout(() => {
        pendingDelays.delete(timer)
        resolve()
      }, ms)
      pendingDelays.add(timer)
    })

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const path = new URL(req.url ?? '/', 'http://localhost').pathname
    if (path !== '/v1/embeddings') return sendJson(res, 404, { error: { message: `no route ${path}` } })
    if (req.method !== 'POST') return sendJson(res, 405, { error: { message: 'use POST' } })

    const raw = await readBody(req)
    let model = ''
    let inputs: string[] = []
    let dimensions: number | undefined
    let invalid: string | undefined
    try {
      const body = JSON.parse(raw) as { model?: unknown; input?: unknown; dimensions?: unknown }
      model = typeof body.model === 'string' ? body.model : ''
      inputs = typeof body.input === 'string' ? [body.input] : Array.isArray(body.input) ? body.input.map(String) : []
      dimensions = typeof body.dimensions === 'number' ? body.dimensions : undefined
      if (model === '') invalid = 'you must provide a model parameter'
      else if (!Array.isArray(body.input) && typeof body.input !== 'string') invalid = "'input' must be a string or an array of strings"
    } catch {
      invalid = 'the body is not valid JSON'
    }
    const record: EmbeddingServerRequest = { model, inputs, status: 0 }
    if (req.headers.authorization !== undefined) record.auth = req.headers.authorization
    if (dimensions !== undefined) record.dimensions = dimensions
    requests.push(record)

    if (behaviour.down) {
      req.socket.destroy()
      return
    }
    const failing = failuresLeft > 0
    if (failing) failuresLeft--
    await wait(behaviour.delayMs)
    if (res.destroyed) return

    if (failing) {
      record.status = behaviour.failStatus
      const headers: Record<string, string> =
        behaviour.retryAfterSeconds === undefined ? {} : { 'retry-after': String(behaviour.retryAfterSeconds) }
      return sendJson(res, behaviour.failStatus, { error: { message: behaviour.errorMessage, type: 'server_error' } }, headers)
    }
    if (invalid !== undefined) {
      record.status = 400
      return sendJson(res, 400, { error: { message: invalid, type: 'invalid_request_error' } })
    }
    const dimension = dimensions ?? behaviour.dimension
    record.status = 200
    sendJson(res, 200, {
      object: 'list',
      data: inputs.map((text, index) => ({ object: 'embedding', index, embedding: deterministicEmbedding(text, dimension) })),
      model,
      usage: { prompt_tokens: inputs.length, total_tokens: inputs.length }
    })
  }

  const server = createServer((req, res) => {
    handle(req, res).catch((error: unknown) => {
      if (!res.headersSent && !res.destroyed) sendJson(res, 500, { error: { message: String(error) } })
    })
  })
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => resolve())
  })
  const { port } = server.address() as AddressInfo

  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    setBehaviour(change) {
      Object.assign(behaviour, change)
      if (change.failFirst !== undefined) failuresLeft = change.failFirst
    },
    close() {
      for (const timer of pendingDelays) clearTimeout(timer)
      pendingDelays.clear()
      return new Promise<void>((resolve, reject) => {
        server.close((error) => (error ? reject(error) : resolve()))
        server.closeAllConnections()
      })
    }
  }
}

/** The vector the server returns for `text`, before any normalisation. */
export function deterministicEmbedding(text: string, dimension: number): number[] {
  const vector = new Array<number>(dimension).fill(0)
  const words = text.toLowerCase().match(/[\p{L}\p{N}_]+/gu) ?? []
  for (const word of words) addDirection(vector, `word:${word}`, 1)
  // The whole-text part makes texts with the same words in another order, or none at all, still differ.
  addDirection(vector, `text:${text}`, 0.5)
  return vector.map((value) => value * 3)
}

function addDirection(vector: number[], key: string, weight: number): void {
  // Seeded by the key, so each key always yields the same direction.
  const next = seededRandom(fnv1a(key))
  for (let i = 0; i < vector.length; i++) vector[i] = (vector[i] ?? 0) + weight * (next() * 2 - 1)
}

function fnv1a(text: string): number {
  let hash = 0x811c9dc5
  for (let i = 0; i < text.length; i++) {
    hash ^= text.charCodeAt(i)
    hash = Math.imul(hash, 0x01000193)
  }
  return hash >>> 0
}

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = []
    req.on('data', (chunk: Buffer) => chunks.push(chunk))
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')))
    req.on('error', reject)
  })
}

function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const payload = JSON.stringify(body)
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload), ...headers })
  res.end(payload)
}
