/** What the repositories need from a store: the SQL is written once and runs on Postgres and PGlite alike. */
export interface Queryable {
  query<R = Record<string, unknown>>(sql: string, params?: readonly unknown[]): Promise<QueryResult<R>>
  /** Runs a script of several statements with no parameters (migrations). */
  exec(sql: string): Promise<void>
}

export interface QueryResult<R> {
  rows: R[]
  rowCount: number
}

export interface PoolStats {
  total: number
  idle: number
  waiting: number
}

export interface Database extends Queryable {
  readonly kind: 'postgres' | 'pglite'
  /** Runs `work` on one connection between BEGIN and COMMIT; any throw rolls the whole of it back. */
  transaction<T>(work: (tx: Queryable) => Promise<T>): Promise<T>
  /** Runs `work` on one connection held for its duration (session-level locks, several statements). */
  withConnection<T>(work: (connection: Queryable) => Promise<T>): Promise<T>
  /** After migrations: teach the driver to read vector columns (PGlite knows them already). */
  registerVectorType?(): Promise<void>
  poolStats(): PoolStats
  close(): Promise<void>
}
