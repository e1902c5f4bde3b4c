import { resolve } from 'node:path'
import { databaseTimeouts, dataDir, type Config } from '../config.js'
import { lockDataDir } from './data-dir-lock.js'
import type { Database } from './database.js'
import { createPgDatabase } from './pg-database.js'
import { createPgliteDatabase } from './pglite-database.js'

/** Postgres when DATABASE_URL is set, otherwise the embedded store under SAGE_DATA_DIR, locked by this process until closed. */
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
  if (config.SAGE_DATA_DIR === ':memory:') return createPgliteDatabase(undefined)
  // One process owns the store: a second one opening its files corrupts it.
  const dir = resolve(dataDir(config))
  const lock = await lockDataDir(dir)
  try {
    const db = await createPgliteDatabase(resolve(dir, 'pglite'))
    const close = db.close
    return Object.assign(db, { close: () => close().finally(() => lock.release()) })
  } catch (error) {
    await lock.release()
    throw error
  }
}
