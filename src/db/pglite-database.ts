import type { Worker } from 'node:worker_threads'
import { moduleWorker } from '../module-worker.js'
import type { Database, Queryable, QueryResult } from './database.js'
import type { PgliteReply, PgliteRequest, PgliteWorkerData, SentError } from './pglite-worker.js'


/** Postgres's SQLSTATE for a connection that failed: the worker thread is the embedded store's one connection. */
const CONNECTION_FAILURE = '08006'

/** Distributes a request without its `id`, which the sender adds. */
type Unsent<T> = T extends unknown ? Omit<T, 'id'> : never

/** An error of the worker's rebuilt here with its fields, so classify-failure.ts reads its `code` as it would in one thread. */
function received(sent: SentError): Error {
  const error = Object.assign(new Error(sent.message), sent.fields)
  error.name = sent.name
  if (sent.stack) error.stack = sent.stack
  return error
}

function storeGone(message: string): Error {
  return Object.assign(new Error(message), { code: CONNECTION_FAILURE })
}

/** The embedded store and the worker thread it runs in, for a test that needs to end the thread under it. */
export interface PgliteWorker {
  database: Database
  worker: Worker
}

/**
 * The embedded store: Postgres compiled to WebAssembly, persisted under `dataDir` (or in memory when `dataDir` is
 * undefined). PGlite works synchronously, so it runs in a worker thread (pglite-worker.ts), where a 10 MB batch
 * never holds up the event loop; each statement crosses to it and back by message. It runs one statement at a time,
 * so "pool" figures are fixed. A worker that dies fails every statement waiting on it and every later one, as a
 * lost connection (code 08006), which the service answers with 503 rather than ending.
 */
export async function openPgliteWorker(dataDir: string | undefined, { loadDataDir }: { loadDataDir?: Blob } = {}): Promise<PgliteWorker> {
  const worker = moduleWorker(import.meta.url, './pglite-worker', { workerData: { dataDir, loadDataDir } satisfies PgliteWorkerData })
  const pending = new Map<number, { resolve(result: unknown): void; reject(error: Error): void }>()
  let nextId = 1
  let gone: Error | undefined
  let closing: Promise<void> | undefined

  let opened!: { resolve(): void; reject(error: Error): void }
  const ready = new Promise<void>((resolve, reject) => (opened = { resolve, reject }))

  /** Held only while an answer is awaited: idle, the thread keeps no process alive, as PGlite in one thread did not. */
  const hold = () => (pending.size > 0 ? worker.ref() : worker.unref())

  const fail = (error: Error) => {
    gone ??= error
    opened.reject(gone)
    for (const call of pending.values()) call.reject(gone)
    pending.clear()
    hold()
  }
  worker.on('message', (reply: PgliteReply) => {
    if (reply.type === 'ready') return opened.resolve()
    if (reply.type === 'unopenable') return fail(received(reply.error))
    const call = pending.get(reply.id)
    if (!call) return
    pending.delete(reply.id)
    hold()
    if (reply.type === 'done') call.resolve(reply.result)
    else call.reject(received(reply.error))
  })
  worker.on('error', (error) => fail(storeGone(`the embedded store's worker thread failed: ${error.message}`)))
  worker.on('exit', (code) => fail(storeGone(closing ? 'the embedded store is closed' : `the embedded store's worker thread exited (code ${code})`)))

  const send = <T>(request: Unsent<PgliteRequest>): Promise<T> => {
    if (gone) return Promise.reject(gone)
    // Closing, a transaction may still roll back: PGlite closes only once it has ended.
    if (closing && request.type !== 'close' && request.type !== 'end') return Promise.reject(storeGone('the embedded store is closed'))
    const id = nextId++
    const answer = new Promise<T>((resolve, reject) => pending.set(id, { resolve: resolve as (result: unknown) => void, reject }))
    worker.postMessage({ ...request, id })
    hold()
    return answer
  }

  const on = (tx: number | undefined): Queryable => ({
    query: <R>(sql: string, params: readonly unknown[] = []) => send<QueryResult<R>>({ type: 'query', sql, params: [...params], tx }),
    exec: (sql: string) => send<void>({ type: 'exec', sql, tx })
  })
  const root = on(undefined)

  try {
    await ready
  } catch (error) {
    await worker.terminate()
    throw error
  }
  hold()

  const database: Database = {
    kind: 'pglite',
    query: root.query,
    exec: root.exec,
    async transaction<T>(work: (tx: Queryable) => Promise<T>): Promise<T> {
      const tx = await send<number>({ type: 'begin' })
      let result: T
      try {
        result = await work(on(tx))
      } catch (error) {
        // The rollback's own failure (the thread gone) says less than what made `work` throw.
        await send({ type: 'end', tx, commit: false }).catch(() => undefined)
        throw error
      }
      await send({ type: 'end', tx, commit: true })
      return result
    },
    // PGlite has one connection and Sage uses withConnection only at start (migrations), before serving.
    withConnection: (work) => work(root),
    poolStats: () => ({ total: 1, idle: 1, waiting: 0 }),
    close() {
      closing ??= (async () => {
        if (!gone) await send({ type: 'close' }).catch(() => undefined)
        await worker.terminate()
      })()
      return closing
    }
  }
  return { database, worker }
}

/** `loadDataDir`, a dump of another store (PGlite's dumpDataDir), starts it as a copy of that one instead of empty. */
export async function createPgliteDatabase(dataDir: string | undefined, options: { loadDataDir?: Blob } = {}): Promise<Database> {
  return (await openPgliteWorker(dataDir, options)).database
}
