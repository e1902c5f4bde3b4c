import { mkdir } from 'node:fs/promises'
import { setImmediate as nextTurn } from 'node:timers/promises'
import { PGlite, type SerializerOptions, type Transaction } from '@electric-sql/pglite'
import { vector } from '@electric-sql/pglite-pgvector'
import { BINARY_ARRAY_OIDS } from './array-params.js'
import type { Database, Queryable, QueryResult } from './database.js'

/**
 * The embedded store: Postgres compiled to WebAssembly, in this process, persisted under `dataDir`
 * (or in memory when `dataDir` is undefined). It runs one statement at a time, so "pool" figures are fixed.
 * `loadDataDir`, a dump of another store (PGlite's dumpDataDir), starts it as a copy of that one instead of empty.
 */
export async function createPgliteDatabase(dataDir: string | undefined, { loadDataDir }: { loadDataDir?: Blob } = {}): Promise<Database> {
  if (dataDir) await mkdir(dataDir, { recursive: true })
  const db = await PGlite.create(dataDir, { extensions: { vector }, loadDataDir })
  await db.exec('SET hnsw.iterative_scan = relaxed_order; SET hnsw.ef_search = 100')

  /**
   * PGlite turns a parameter into text through the serializer of its type, falling back to toString(), so a
   * Buffer (a vector, or an array of text, uuid or timestamptz, in binary: see vector-param.ts and array-params.ts)
   * needs a serializer that passes bytes through for those types; the wire protocol then sends it as binary. Any
   * other value of those types still goes through PGlite's own serializer. The vector oids are read once, through
   * the caller's `target`: inside a transaction, a query on the store itself would wait for the transaction to end.
   */
  let binarySerializers: SerializerOptions | undefined
  async function serializersFor(target: PGlite | Transaction, params: readonly unknown[]): Promise<{ serializers: SerializerOptions } | undefined> {
    if (!params.some((param) => param instanceof Uint8Array)) return undefined
    if (!binarySerializers) {
      const { rows } = await target.query<{ oid: number; typarray: number }>("SELECT oid::int8 AS oid, typarray::int8 AS typarray FROM pg_type WHERE oid = 'vector'::regtype")
      const oids = [...rows.flatMap((row) => [Number(row.oid), Number(row.typarray)]), ...BINARY_ARRAY_OIDS]
      binarySerializers = Object.fromEntries(oids.map((oid) => {
        const own = db.serializers[oid]
        return [oid, (value: unknown) => (value instanceof Uint8Array ? value : own ? own(value) : String(value)) as string]
      }))
    }
    return { serializers: binarySerializers }
  }

  /**
   * PGlite runs a statement synchronously and settles its promise as a microtask, so a loop of awaited statements
   * (the vector indexer's drain, a backfill, an import) never lets the event loop take a request or fire a timer:
   * 8,000 statements a second with not one 1 ms timer firing, measured. Each statement ends with a turn of the event
   * loop, so the service keeps answering while the embedded store works.
   */
  const wrap = (target: PGlite | Transaction): Queryable => ({
    async query<R>(sql: string, params: readonly unknown[] = []): Promise<QueryResult<R>> {
      try {
        const result = await target.query<R>(sql, params as unknown[], await serializersFor(target, params))
        return { rows: result.rows, rowCount: result.affectedRows ?? result.rows.length }
      } finally {
        await nextTurn()
      }
    },
    async exec(sql: string): Promise<void> {
      try {
        await target.exec(sql)
      } finally {
        await nextTurn()
      }
    }
  })
  const root = wrap(db)
  let closed = false

  return {
    kind: 'pglite',
    query: root.query,
    exec: root.exec,
    transaction: (work) => db.transaction((tx) => work(wrap(tx))),
    // PGlite has one connection and Sage uses withConnection only at start (migrations), before serving.
    withConnection: (work) => work(root),
    poolStats: () => ({ total: 1, idle: 1, waiting: 0 }),
    async close() {
      if (closed) return
      closed = true
      await db.close()
    }
  }
}
