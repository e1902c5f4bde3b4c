import { breaksConnection } from '../classify-failure.js'
import type { Database, Queryable } from './database.js'

/** Runs `work` between BEGIN and COMMIT on a connection already held; any throw rolls it back. */
export async function inTransaction<T>(connection: Queryable, work: () => Promise<T>): Promise<T> {
  await connection.query('BEGIN')
  try {
    const result = await work()
    await connection.query('COMMIT')
    return result
  } catch (error) {
    // On a connection that stopped answering, ROLLBACK would wait out a second timeout; the pool destroys it instead.
    if (!breaksConnection(error)) await connection.query('ROLLBACK').catch(() => undefined)
    throw error
  }
}

/** Runs `work` on one connection holding a session advisory lock, so replicas doing the same take turns. */
export function withAdvisoryLock<T>(db: Database, key: number, work: (connection: Queryable) => Promise<T>): Promise<T> {
  return db.withConnection(async (connection) => {
    await connection.query('SELECT pg_advisory_lock($1)', [key])
    try {
      return await work(connection)
    } finally {
      await connection.query('SELECT pg_advisory_unlock($1)', [key]).catch(() => undefined)
    }
  })
}
