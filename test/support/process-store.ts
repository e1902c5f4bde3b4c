import { createPostgresDatabase } from '../helper.js'

/**
 * The store for a test that starts Sage as a process: a fresh Postgres database when TEST_DATABASE_URL is set
 * (it starts in well under a second), else the in-memory PGlite (which can take seconds on a busy machine).
 * `store` asks for one of the two (Postgres needs TEST_DATABASE_URL), `dataDir` for PGlite kept in a folder.
 */
export async function processStore(options: { store?: 'pglite' | 'postgres'; dataDir?: string } = {}): Promise<{ env: Record<string, string>; drop(): Promise<void> }> {
  const base = process.env.TEST_DATABASE_URL
  const store = options.store ?? (base ? 'postgres' : 'pglite')
  if (store === 'pglite') return { env: { SAGE_DATA_DIR: options.dataDir ?? ':memory:' }, drop: async () => undefined }
  if (!base) throw new Error('a Postgres store needs TEST_DATABASE_URL')
  const database = await createPostgresDatabase(base)
  return { env: { DATABASE_URL: database.url }, drop: () => database.drop() }
}
