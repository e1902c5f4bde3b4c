/** What the repositories need from a store: the SQL is written once and runs on Postgres and PGlite alike. */
export interface Queryable {
  query<R = Record<string, unknown>>(sql: string, params?: readonly unknown[], options?: QueryOptions): Promise<QueryResult<R>>
  /** Runs a script of several statements with no parameters (migrations). */
  exec(sql: string): Promise<void>
}

/** The longest timer Node keeps: effectively no client-side limit for one statement. */
export const NO_QUERY_TIMEOUT = 2_147_483_647

export interface QueryOptions {
  /**
   * Keep the statement prepared on each connection: parsed and planned once, not per call. For the hot, fixed
   * statements whose best plan does not depend on the values (a save's insert); never for recall, whose plan does.
   */
  prepare?: boolean
  /** Overrides the store's client-side wait for this statement (Postgres only), e.g. building an index. */
  timeoutMs?: number
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
