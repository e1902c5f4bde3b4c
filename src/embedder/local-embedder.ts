import type { Worker } from 'node:worker_threads'
import { moduleWorker } from '../module-worker.js'
import type { Embedder } from './embedder.js'
import { EmbedderError } from './embedder-error.js'
import type { EmbedRequest, WorkerReply } from './local-embedder-worker.js'
import { LocalModelError, modelSource, type LocalModelOptions } from './local-model.js'

export interface LocalEmbedderOptions extends LocalModelOptions {
  /** Texts per model run. */
  batchSize: number
  /** The vector length the configuration expects (EMBEDDING_DIMENSIONS); a model of another fails the load. */
  dimension?: number
}


/** One `embed` call: its texts go to the worker a batch at a time, shortest texts first (less padding per batch). */
interface Call {
  texts: readonly string[]
  /** Positions in `texts`, by length. */
  order: number[]
  /** How many of `order` were sent. */
  sent: number
  vectors: number[][]
  resolve(vectors: number[][]): void
  reject(error: Error): void
  /** Stops listening to the caller's signal. */
  release(): void
}

interface Running {
  worker: Worker
  ready: Promise<number>
}

/**
 * A sentence-embedding model run in process by ONNX Runtime, in a worker thread so that a batch being embedded never
 * holds up the event loop (recalls, hooks, health checks). The worker takes one batch at a time; the next batch is
 * taken from the call with the fewest texts left, so a recall's one query waits for at most one batch of a backfill.
 * A worker that dies fails the calls it had and is started again (from the cache only) by the next call.
 */
export class LocalEmbedder implements Embedder {
  readonly id: string
  readonly dimension: number
  readonly kind = 'semantic'

  readonly #options: LocalEmbedderOptions
  #running: Running | undefined
  readonly #calls: Call[] = []
  #inFlight: { id: number; call: Call; positions: number[] } | undefined
  #nextId = 0
  #closed = false

  private constructor(options: LocalEmbedderOptions, running: Running, dimension: number) {
    this.#options = options
    this.#running = running
    this.dimension = dimension
    this.id = `local:${modelSource(options.model)}:${options.dtype}:${options.pooling}/${dimension}`
  }

  /** Starts the worker and loads the model; rejects with a LocalModelError saying what to change when it cannot. */
  static async load(options: LocalEmbedderOptions): Promise<LocalEmbedder> {
    const running = startWorker(options)
    let dimension: number
    try {
      dimension = await running.ready
    } catch (error) {
      await running.worker.terminate()
      throw error
    }
    if (options.dimension !== undefined && options.dimension !== dimension) {
      await running.worker.terminate()
      throw new LocalModelError(
        `EMBEDDING_DIMENSIONS=${options.dimension}, but EMBEDDING_MODEL=${options.model} makes vectors of ${dimension}: ` +
        `unset EMBEDDING_DIMENSIONS (a local model says its own) or set it to ${dimension}.`
      )
    }
    const embedder = new LocalEmbedder(options, running, dimension)
    embedder.#watch(running)
    // Idle, the worker does not keep a command's process alive; it is held while a batch is in it.
    running.worker.unref()
    return embedder
  }

  embed(texts: readonly string[], signal?: AbortSignal): Promise<number[][]> {
    if (this.#closed) return Promise.reject(new EmbedderError(`${this.id} is closed`, { retryable: false }))
    if (signal?.aborted) return Promise.reject(this.#aborted(signal))
    if (texts.length === 0) return Promise.resolve([])
    return new Promise((resolve, reject) => {
      const order = texts.map((_, i) => i).sort((a, b) => texts[a]!.length - texts[b]!.length)
      const onAbort = () => this.#drop(call, this.#aborted(signal!))
      const call: Call = {
        texts,
        order,
        sent: 0,
        vectors: new Array<number[]>(texts.length),
        resolve,
        reject,
        release: () => signal?.removeEventListener('abort', onAbort)
      }
      signal?.addEventListener('abort', onAbort, { once: true })
      this.#calls.push(call)
      this.#pump()
    })
  }

  async close(): Promise<void> {
    this.#closed = true
    const running = this.#running
    this.#running = undefined
    for (const call of [...this.#calls]) this.#drop(call, new EmbedderError(`${this.id} was closed`, { retryable: false }))
    await running?.worker.terminate()
  }

  /** Sends the next batch when the worker is free: from the call with the fewest texts left, the oldest among equals. */
  #pump(): void {
    if (this.#inFlight || this.#closed) return
    let call: Call | undefined
    for (const candidate of this.#calls) {
      if (!call || candidate.order.length - candidate.sent < call.order.length - call.sent) call = candidate
    }
    if (!call) {
      this.#running?.worker.unref()
      return
    }
    const running = this.#running ?? this.#restart()
    const positions = call.order.slice(call.sent, call.sent + this.#options.batchSize)
    call.sent += positions.length
    const request: EmbedRequest = { id: this.#nextId++, texts: positions.map((i) => call.texts[i]!) }
    this.#inFlight = { id: request.id, call, positions }
    running.worker.ref()
    // A restarted worker takes messages while it loads, and answers them once loaded.
    running.worker.postMessage(request)
  }

  #watch(running: Running): void {
    running.worker.on('message', (reply: WorkerReply) => {
      if (running !== this.#running) return
      if (reply.type === 'embedded') this.#embedded(reply.id, reply.vectors)
      else if (reply.type === 'failed') this.#failed(reply.id, new EmbedderError(`${this.id} failed to embed: ${reply.message}`, { retryable: false }))
    })
    // A worker that cannot load again (say the cached model was removed) fails the calls that wait for it.
    running.ready.catch((error: Error) => {
      if (running === this.#running) this.#lost(new EmbedderError(error.message, { retryable: true, cause: error }))
    })
    running.worker.on('exit', (code) => {
      if (running === this.#running) this.#lost(new EmbedderError(`${this.id}: its worker thread stopped (exit code ${code}); it is started again on the next call`, { retryable: true }))
    })
  }

  #restart(): Running {
    // The service never downloads past its start: a restarted worker reads the cache only.
    const running = startWorker({ ...this.#options, allowDownload: false })
    this.#running = running
    this.#watch(running)
    return running
  }

  /** Every call waiting on the worker fails; the next call starts a new one. */
  #lost(error: EmbedderError): void {
    const running = this.#running
    this.#running = undefined
    this.#inFlight = undefined
    running?.worker.terminate().catch(() => undefined)
    for (const call of [...this.#calls]) this.#drop(call, error)
  }

  #embedded(id: number, flat: Float32Array): void {
    const inFlight = this.#inFlight
    if (!inFlight || inFlight.id !== id) return
    this.#inFlight = undefined
    const { call, positions } = inFlight
    if (this.#calls.includes(call)) {
      const dimension = this.dimension
      if (flat.length !== positions.length * dimension) {
        this.#drop(call, new EmbedderError(`${this.id} returned ${flat.length / positions.length} dimensions, not ${dimension}`, { retryable: false }))
      } else {
        positions.forEach((position, i) => {
          call.vectors[position] = Array.from(flat.subarray(i * dimension, (i + 1) * dimension))
        })
        if (call.sent === call.order.length) {
          this.#remove(call)
          call.resolve(call.vectors)
        }
      }
    }
    this.#pump()
  }

  #failed(id: number, error: EmbedderError): void {
    const inFlight = this.#inFlight
    if (!inFlight || inFlight.id !== id) return
    this.#inFlight = undefined
    this.#drop(inFlight.call, error)
    this.#pump()
  }

  /** Ends a call with an error; a batch of it already in the worker finishes there and is thrown away. */
  #drop(call: Call, error: Error): void {
    if (!this.#remove(call)) return
    call.reject(error)
  }

  #remove(call: Call): boolean {
    const index = this.#calls.indexOf(call)
    if (index < 0) return false
    this.#calls.splice(index, 1)
    call.release()
    return true
  }

  #aborted(signal: AbortSignal): EmbedderError {
    return new EmbedderError(`Embedding with ${this.id} was aborted by the caller`, { retryable: true, cause: signal.reason })
  }
}

function startWorker(options: LocalModelOptions): Running {
  const worker = moduleWorker(import.meta.url, './local-embedder-worker', { workerData: pickModelOptions(options) })
  let crash = ''
  // An uncaught error in the worker ends it; 'exit' follows, and says what it was.
  worker.on('error', (error) => (crash = `: ${error.message}`))
  const ready = new Promise<number>((resolve, reject) => {
    const onMessage = (reply: WorkerReply) => {
      if (reply.type === 'ready') resolve(reply.dimension)
      else if (reply.type === 'unloadable') reject(new LocalModelError(reply.message))
      else return
      worker.off('message', onMessage)
      worker.off('exit', onExit)
    }
    const onExit = (code: number) => reject(new LocalModelError(`EMBEDDING_MODEL=${options.model}: the model's worker thread stopped while loading (exit code ${code})${crash}`))
    worker.on('message', onMessage)
    worker.once('exit', onExit)
  })
  // Whoever waits on a restart learns of its failure through #watch; this copy must not count as unhandled.
  ready.catch(() => undefined)
  return { worker, ready }
}

/** Only the model's own options cross into the worker (structured clone refuses anything else, like functions). */
function pickModelOptions(options: LocalModelOptions): LocalModelOptions {
  const { model, cacheDir, hubUrl, allowDownload, dtype, pooling, threads } = options
  return { model, cacheDir, hubUrl, allowDownload, dtype, pooling, threads }
}
