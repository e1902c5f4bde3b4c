// The worker thread of the embedded store (pglite-database.ts): PGlite runs here, one statement at a time, so that
// its synchronous work never holds up the service's event loop.
import { mkdir } from 'node:fs/promises'
import { parentPort, workerData } from 'node:worker_threads'
import { PGlite, type SerializerOptions, type Transaction } from '@electric-sql/pglite'
import { vector } from '@electric-sql/pglite-pgvector'
import { BINARY_ARRAY_OIDS } from './array-params.js'

export interface PgliteWorkerData {
  /** Undefined keeps the store in memory. */
  dataDir: string | undefined
  /** A dump of another store to start from (PGlite's dumpDataDir). */
  loadDataDir?: Blob
}

/** A statement or script, on the store itself or inside the open transaction `tx`. */
export type PgliteRequest =
  | { id: number; type: 'query'; sql: string; params: unknown[]; tx?: number }
  | { id: number; type: 'exec'; sql: string; tx?: number }
  /** Opens a transaction once the store is free of any other; answers its number. */
  | { id: number; type: 'begin' }
  /** Commits or rolls back transaction `tx`; answers once it has ended. */
  | { id: number; type: 'end'; tx: number; commit: boolean }
  | { id: number; type: 'close' }

/** An error as it crosses the thread: its class name, message, stack and Postgres's fields (code, detail, ...). */
export interface SentError {
  name: string
  message: string
  stack?: string
  fields: Record<string, string | number | boolean>
}

export type PgliteReply =
  | { type: 'ready' }
  | { type: 'unopenable'; error: SentError }
  | { type: 'done'; id: number; result?: unknown }
  | { type: 'failed'; id: number; error: SentError }

const port = parentPort!

/** Only the plain fields: PGlite also hangs the statement's parameters on an error, which may be megabytes. */
function sendable(error: unknown): SentError {
  if (!(error instanceof Error)) return { name: 'Error', message: String(error), fields: {} }
  const fields: SentError['fields'] = {}
  for (const [key, value] of Object.entries(error)) {
    if (typeof value === 'string' || typeof value === 'number' || typeof value === 'boolean') fields[key] = value
  }
  return { name: error.name, message: error.message, stack: error.stack, fields }
}

async function open({ dataDir, loadDataDir }: PgliteWorkerData): Promise<PGlite> {
  if (dataDir) await mkdir(dataDir, { recursive: true })
  const db = await PGlite.create(dataDir, { extensions: { vector }, loadDataDir })
  await db.exec('SET hnsw.iterative_scan = relaxed_order; SET hnsw.ef_search = 100')
  return db
}

/**
 * PGlite turns a parameter into text through the serializer of its type, falling back to toString(), so a
 * Uint8Array (a vector, or an array of text, uuid or timestamptz, in binary: see vector-param.ts and array-params.ts)
 * needs a serializer that passes bytes through for those types; the wire protocol then sends it as binary. Any
 * other value of those types still goes through PGlite's own serializer. The vector oids are read once, through
 * the caller's `target`: inside a transaction, a query on the store itself would wait for the transaction to end.
 */
function binarySerializers(db: PGlite): (target: PGlite | Transaction, params: readonly unknown[]) => Promise<{ serializers: SerializerOptions } | undefined> {
  let serializers: SerializerOptions | undefined
  return async (target, params) => {
    if (!params.some((param) => param instanceof Uint8Array)) return undefined
    if (!serializers) {
      const { rows } = await target.query<{ oid: number; typarray: number }>("SELECT oid::int8 AS oid, typarray::int8 AS typarray FROM pg_type WHERE oid = 'vector'::regtype")
      const oids = [...rows.flatMap((row) => [Number(row.oid), Number(row.typarray)]), ...BINARY_ARRAY_OIDS]
      serializers = Object.fromEntries(oids.map((oid) => {
        const own = db.serializers[oid]
        return [oid, (value: unknown) => (value instanceof Uint8Array ? value : own ? own(value) : String(value)) as string]
      }))
    }
    return { serializers }
  }
}

function serve(db: PGlite): void {
  const serializersFor = binarySerializers(db)
  const open = new Map<number, { tx: Transaction; end(commit: boolean, id: number): void }>()
  let nextTx = 1

  const reply = (id: number, work: () => Promise<unknown>) => {
    work().then(
      (result) => port.postMessage({ type: 'done', id, result } satisfies PgliteReply),
      (error: unknown) => port.postMessage({ type: 'failed', id, error: sendable(error) } satisfies PgliteReply)
    )
  }
  const targetOf = (tx: number | undefined): PGlite | Transaction => {
    if (tx === undefined) return db
    const transaction = open.get(tx)
    if (!transaction) throw new Error(`transaction ${tx} of the embedded store has ended`)
    return transaction.tx
  }

  /**
   * PGlite's own transaction, held open across messages: it takes the store from every other statement (which
   * waits, as it would in one thread) until the main thread says to commit or roll back.
   */
  const begin = (id: number) => {
    const tx = nextTx++
    let endedBy: number | undefined
    db.transaction(async (transaction) => {
      const commit = await new Promise<boolean>((resolve) => {
        open.set(tx, { tx: transaction, end: (commit, by) => { endedBy = by; resolve(commit) } })
        port.postMessage({ type: 'done', id, result: tx } satisfies PgliteReply)
      })
      if (!commit) await transaction.rollback()
    }).then(
      () => port.postMessage({ type: 'done', id: endedBy!, result: undefined } satisfies PgliteReply),
      (error: unknown) => port.postMessage({ type: 'failed', id: endedBy ?? id, error: sendable(error) } satisfies PgliteReply)
    ).finally(() => open.delete(tx))
  }

  port.on('message', (request: PgliteRequest) => {
    switch (request.type) {
      case 'query':
        return reply(request.id, async () => {
          const target = targetOf(request.tx)
          const result = await target.query(request.sql, request.params, await serializersFor(target, request.params))
          return { rows: result.rows, rowCount: result.affectedRows ?? result.rows.length }
        })
      case 'exec':
        return reply(request.id, async () => void await targetOf(request.tx).exec(request.sql))
      case 'begin':
        return begin(request.id)
      case 'end': {
        const transaction = open.get(request.tx)
        if (transaction) return transaction.end(request.commit, request.id)
        return reply(request.id, () => Promise.reject(new Error(`transaction ${request.tx} of the embedded store has ended`)))
      }
      case 'close':
        return reply(request.id, () => db.close())
    }
  })
}

try {
  const db = await open(workerData as PgliteWorkerData)
  serve(db)
  port.postMessage({ type: 'ready' } satisfies PgliteReply)
} catch (error) {
  port.postMessage({ type: 'unopenable', error: sendable(error) } satisfies PgliteReply)
}
