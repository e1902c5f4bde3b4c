import { readdir, readFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { Database } from './database.js'
import { inTransaction, withAdvisoryLock } from './connection-scopes.js'

import { PACKAGE_ROOT } from '../package-root.js'

export const MIGRATIONS_DIR = join(PACKAGE_ROOT, 'migrations')

/** One key for every Sage process: replicas starting together apply each migration exactly once. */
const MIGRATION_LOCK_KEY = 7_286_813_001

export interface Migration {
  version: number
  name: string
  sql: string
}

export async function loadMigrations(dir = MIGRATIONS_DIR): Promise<Migration[]> {
  const files = (await readdir(dir)).filter((file) => /^\d+_.+\.sql$/.test(file)).sort()
  const migrations: Migration[] = []
  for (const file of files) {
    const version = Number.parseInt(file, 10)
    if (migrations.some((m) => m.version === version)) throw new Error(`two migrations share version ${version} in ${dir}`)
    migrations.push({ version, name: file, sql: await readFile(join(dir, file), 'utf8') })
  }
  return migrations
}

/** Applies the migrations not yet recorded, each in its own transaction, under a session advisory lock. */
export async function migrate(db: Database, dir = MIGRATIONS_DIR): Promise<string[]> {
  const migrations = await loadMigrations(dir)
  return withAdvisoryLock(db, MIGRATION_LOCK_KEY, async (connection) => {
    await connection.query(`CREATE TABLE IF NOT EXISTS sage_migrations (
      version    integer PRIMARY KEY,
      name       text NOT NULL,
      applied_at timestamptz NOT NULL DEFAULT now()
    )`)
    const done = new Set(
      (await connection.query<{ version: number }>('SELECT version FROM sage_migrations')).rows.map((row) => row.version)
    )
    const applied: string[] = []
    for (const migration of migrations) {
      if (done.has(migration.version)) continue
      await inTransaction(connection, async () => {
        await connection.exec(migration.sql)
        await connection.query('INSERT INTO sage_migrations (version, name) VALUES ($1, $2)', [migration.version, migration.name])
      }).catch((error: unknown) => {
        throw new Error(`migration ${migration.name} failed: ${(error as Error).message}`, { cause: error })
      })
      applied.push(migration.name)
    }
    return applied
  })
}
