import { mkdir } from 'node:fs/promises'
import { PGlite, type Transaction } from '@electric-sql/pglite'
import { vector } from '@electric-sql/pglite-pgvector'
import type { Database, Queryable, QueryResult } from './database.js'

/**
 * The embedded store: Postgres compiled to WebAssembly, in this process, persisted under `dataDir`
 * (or in memory when `dataDir` is undefined). It runs one statement at a time, so "pool" figures are fixed.
 */
export async function createPgliteDatabase(dataDir: string | undefined): Promise<Database> {
  if (dataDir) await mkdir(dataDir, { recursive: true })
  const db = await PGlite.create(dataDir, { extensions: { vector } })
  await db.exec('SET hnsw.iterative_scan = relaxed_order; SET hnsw.ef_search = 100')

  const wrap = (target: PGlite | Transaction): Queryable => ({
    async query<R>(sql: string, params: readonly unknown[] = []): Promise<QueryResult<R>> {
      const result = await target.query<R>(sql, params as unknown[])
      return { rows: result.rows, rowCount: result.affectedRows ?? result.rows.length }
    },
    async exec(sql: string): Promise<void> {
      await target.exec(sql)
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
