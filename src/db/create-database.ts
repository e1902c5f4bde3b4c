import { resolve } from 'node:path'
import { databaseTimeouts, type Config } from '../config.js'
import type { Database } from './database.js'
import { createPgDatabase } from './pg-database.js'
import { createPgliteDatabase } from './pglite-database.js'

/** Postgres when DATABASE_URL is set, otherwise the embedded store under SAGE_DATA_DIR. */
export async function createDatabase(config: Config, onError?: (error: Error) => void): Promise<Database> {
  if (config.DATABASE_URL) {
    return createPgDatabase({
      url: config.DATABASE_URL,
      poolMax: config.DB_POOL_MAX,
      ...databaseTimeouts(config),
      onError
    })
  }
  // ':memory:' keeps nothing on disk, for tests and throwaway runs.
  return createPgliteDatabase(config.SAGE_DATA_DIR === ':memory:' ? undefined : resolve(config.SAGE_DATA_DIR, 'pglite'))
}
