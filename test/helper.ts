import { createHash, randomBytes } from 'node:crypto'
import { mkdtemp, readFile, rename, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before } from 'node:test'
import { PGlite } from '@electric-sql/pglite'
import { vector } from '@electric-sql/pglite-pgvector'
import type { FastifyInstance } from 'fastify'
import { fileURLToPath } from 'node:url'
import pg from 'pg'
import { buildApp, type AppOptions } from '../src/app.js'
import { configWith, type Config } from '../src/config.js'
import type { Database } from '../src/db/database.js'
import { createPgDatabase } from '../src/db/pg-database.js'
import { createPgliteDatabase } from '../src/db/pglite-database.js'
import { loadMigrations, migrate } from '../src/db/migrate.js'

/** A store the tests run against: the embedded PGlite always, real Postgres when TEST_DATABASE_URL is set. */
export interface Backend {
  name: 'pglite' | 'postgres'
  /** A fresh, migrated, empty store of this kind; `drop()` removes it. */
  create(): Promise<TestStore>
}

export interface TestStore {
  db: Database
  /** The URL of the store when it is a real server (for child processes). */
  url?: string
  /** Empties every table between tests, keeping the schema. */
  reset(): Promise<void>
  drop(): Promise<void>
}

const inCi = process.env.CI === 'true'

async function reset(db: Database): Promise<void> {
  // The vector tables (migrations/003) hold ids of memories: emptied with them, so no test sees another's backlog.
  // Locked in the service's own order, backlog first (memory-store.ts): a running indexer round holds the
  // backlog and then reads memories, so truncating memories first deadlocked with it (seen once in CI).
  // The term statistics (migrations/005) likewise, their backlog before memories for the same reason: a fold holds it.
  await db.query('TRUNCATE term_backlog, term_removals, term_frequencies, namespace_statistics, vector_backlog, memory_vectors, memories')
}

/**
 * A dump of a freshly migrated PGlite, kept in the temp folder for every test process of this machine, keyed by the
 * migrations and the installed packages: a store started from it skips initdb and the migrations, most of its creation.
 */
let template: Promise<Blob> | undefined
function migratedTemplate(): Promise<Blob> {
  return (template ??= (async () => {
    // The lock file stands for the PGlite and pgvector versions.
    const hash = createHash('sha256').update(await readFile(join(REPO_ROOT, 'package-lock.json')))
    for (const migration of await loadMigrations()) hash.update(migration.name).update(migration.sql)
    const file = join(tmpdir(), `sage-test-pglite-${hash.digest('hex').slice(0, 16)}.tar`)
    try {
      return new Blob([await readFile(file)])
    } catch {
      // Not made yet on this machine: made once, on disk, then dumped.
    }
    const work = await mkdtemp(join(tmpdir(), 'sage-test-pglite-'))
    try {
      const db = await createPgliteDatabase(work)
      await migrate(db)
      await db.close()
      const raw = await PGlite.create(work, { extensions: { vector } })
      const dump = await raw.dumpDataDir('none')
      await raw.close()
      // Renamed into place whole, so a process that reads it never sees half a file.
      const partial = `${file}.${process.pid}`
      await writeFile(partial, Buffer.from(await dump.arrayBuffer()))
      await rename(partial, file)
      return dump
    } finally {
      await rm(work, { recursive: true, force: true })
    }
  })())
}

const pglite: Backend = {
  name: 'pglite',
  async create() {
    const db = await createPgliteDatabase(undefined, { loadDataDir: await migratedTemplate() })
    // Nothing left to apply: the template is keyed by the migrations.
    await migrate(db)
    return { db, reset: () => reset(db), drop: () => db.close() }
  }
}

/** Each test file gets its own database on the server, so files never see each other's rows. */
export async function createPostgresDatabase(baseUrl: string, prefix = `sage_test_${process.pid}`): Promise<{ name: string; url: string; drop(): Promise<void> }> {
  const name = `${prefix}_${randomBytes(4).toString('hex')}`
  const admin = new pg.Client({ connectionString: baseUrl })
  await admin.connect()
  try {
    await admin.query(`CREATE DATABASE ${name}`)
  } finally {
    await admin.end()
  }
  const url = new URL(baseUrl)
  url.pathname = `/${name}`
  return {
    name,
    url: url.toString(),
    async drop() {
      const client = new pg.Client({ connectionString: baseUrl })
      await client.connect()
      try {
        await client.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`)
      } finally {
        await client.end()
      }
    }
  }
}

const postgres: Backend = {
  name: 'postgres',
  async create() {
    const base = process.env.TEST_DATABASE_URL
    if (!base) throw new Error('TEST_DATABASE_URL must point at a Postgres with pgvector when CI=true')
    const database = await createPostgresDatabase(base)
    const db = createPgDatabase({ url: database.url, poolMax: 10, statementTimeoutMs: 30_000 })
    await migrate(db)
    return {
      db,
      url: database.url,
      reset: () => reset(db),
      async drop() {
        await db.close()
        await database.drop()
      }
    }
  }
}

/** The stores to test: PGlite always; Postgres with TEST_DATABASE_URL, and under CI=true its absence fails. */
export function backends(): Backend[] {
  return process.env.TEST_DATABASE_URL || inCi ? [pglite, postgres] : [pglite]
}

/** A Redis URL for tests, or undefined to skip; under CI=true its absence fails the test that asks. */
export function testRedisUrl(): string | undefined {
  const url = process.env.TEST_REDIS_URL
  if (!url && inCi) throw new Error('TEST_REDIS_URL must point at a Redis when CI=true')
  return url
}

export function testConfig(overrides: Partial<Config> = {}): Config {
  // Tests' namespaces are small: searched exactly, they would never reach the graph that they are about.
  return configWith({ LOG_LEVEL: 'silent', SAGE_DATA_DIR: ':memory:', RECALL_EXACT_MAX_MEMORIES: 0, ...overrides })
}

/** The app over a store the test owns; closed by the caller (usually in `after`). */
export async function buildTestApp(db: Database, overrides: Partial<Config> = {}, options: AppOptions = {}): Promise<FastifyInstance> {
  const app = await buildApp(testConfig(overrides), { logger: false, backfill: false, database: db, ...options })
  await app.ready()
  return app
}

/** The repository root, whether tests run compiled (dist/test) or from source (test). */
export const REPO_ROOT = fileURLToPath(new URL(import.meta.url.includes('/dist/') ? '../../' : '../', import.meta.url))

/** A fresh store of `backend` and an app over it for one suite: created before its tests, closed and dropped after. */
export function useTestApp(backend: Backend, overrides: Partial<Config> = {}, options: AppOptions = {}): { app: FastifyInstance; store: TestStore } {
  const suite = {} as { app: FastifyInstance; store: TestStore }
  before(async () => {
    suite.store = await backend.create()
    suite.app = await buildTestApp(suite.store.db, overrides, options)
  })
  after(async () => {
    await suite.app?.close()
    await suite.store?.drop()
  })
  return suite
}

/** How many memories the store holds, for "nothing was written" assertions. */
export async function memoryCount(db: Database): Promise<number> {
  return (await db.query<{ n: number }>('SELECT count(*)::int AS n FROM memories')).rows[0]!.n
}
