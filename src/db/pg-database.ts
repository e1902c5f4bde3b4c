import { createHash } from 'node:crypto'
import pg from 'pg'
import pgvector from 'pgvector'
import { breaksConnection } from '../classify-failure.js'
import { NO_QUERY_TIMEOUT, type Database, type PoolStats, type Queryable, type QueryOptions, type QueryResult } from './database.js'
import { inTransaction } from './connection-scopes.js'

export interface PgDatabaseOptions {
  url: string
  poolMax: number
  statementTimeoutMs: number
  /** Longest wait for an answer to one query; default none (the server's statement timeout alone). */
  queryTimeoutMs?: number
  /** Longest wait for a connection, new or from the pool. Default 5 s. */
  connectionTimeoutMs?: number
  onError?: (error: Error) => void
}

/** The production store: a pg.Pool whose connections know the vector type and allow filtered HNSW scans. */
export function createPgDatabase(options: PgDatabaseOptions): Database {
  // pgvector's parser for the vector type, per pool: its oid is only known once the extension exists.
  let vectorOid: number | undefined
  const types = {
    getTypeParser: ((oid: number, format?: 'text' | 'binary') =>
      oid === vectorOid ? pgvector.fromSql : pg.types.getTypeParser(oid, format)) as typeof pg.types.getTypeParser
  }
  const pool = new pg.Pool({
    types,
    connectionString: options.url,
    max: options.poolMax,
    idleTimeoutMillis: 30_000,
    // A request waiting for a connection fails (503) instead of hanging when the database is gone.
    connectionTimeoutMillis: options.connectionTimeoutMs ?? 5_000,
    statement_timeout: options.statementTimeoutMs,
    // A frozen server never cancels its own statements: the client stops waiting.
    query_timeout: options.queryTimeoutMs,
    application_name: 'sage-memory',
    // Filtered vector queries keep scanning the HNSW graph until enough rows pass the filter. No JIT: Sage's
    // statements take milliseconds, and a stale row estimate made Postgres spend ~25 ms compiling one.
    options: '-c hnsw.iterative_scan=relaxed_order -c hnsw.ef_search=100 -c jit=off'
  })
  // An idle client losing its server must not crash the process; the next checkout reconnects.
  pool.on('error', (error) => options.onError?.(error))

  /** A prepared statement's name follows from its text: one text, one name, on every connection. */
  const statementNames = new Map<string, string>()
  const statementName = (sql: string): string => {
    let name = statementNames.get(sql)
    if (name === undefined) {
      name = `sage_${createHash('sha256').update(sql).digest('hex').slice(0, 24)}`
      statementNames.set(sql, name)
    }
    return name
  }

  const wrap = (client: pg.Pool | pg.PoolClient): Queryable => ({
    async query<R>(sql: string, params: readonly unknown[] = [], options: QueryOptions = {}): Promise<QueryResult<R>> {
      // Measured on single saves at c=32: parsing and planning the insert each time cost a sixth of the throughput.
      const result = await client.query({
        text: sql,
        values: params as unknown[],
        name: options.prepare ? statementName(sql) : undefined,
        ...(options.timeoutMs === undefined ? {} : { query_timeout: options.timeoutMs })
      } as pg.QueryConfig)
      return { rows: result.rows as R[], rowCount: result.rowCount ?? 0 }
    },
    async exec(sql: string): Promise<void> {
      // Migrations may rewrite whole tables: no client-side limit.
      await client.query({ text: sql, query_timeout: NO_QUERY_TIMEOUT } as pg.QueryConfig)
    }
  })
  const poolQueryable = wrap(pool)

  async function withConnection<T>(work: (connection: Queryable) => Promise<T>): Promise<T> {
    const client = await pool.connect()
    let broken: Error | undefined
    try {
      return await work(wrap(client))
    } catch (error) {
      broken = breaksConnection(error) ? (error as Error) : undefined
      throw error
    } finally {
      // A connection that failed mid-flight is destroyed rather than handed to the next request.
      client.release(broken)
    }
  }

  return {
    kind: 'postgres',
    query: poolQueryable.query,
    exec: poolQueryable.exec,
    withConnection,
    transaction: (work) => withConnection((connection) => inTransaction(connection, () => work(connection))),
    async registerVectorType() {
      const { rows } = await pool.query<{ oid: number }>("SELECT oid FROM pg_type WHERE typname = 'vector'")
      vectorOid = rows[0]?.oid
    },
    poolStats: (): PoolStats => ({ total: pool.totalCount, idle: pool.idleCount, waiting: pool.waitingCount }),
    close: () => pool.end()
  }
}

