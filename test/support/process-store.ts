import { createPostgresDatabase } from '../helper.js'

/**
 * The store for a test that starts Sage as a process: a fresh Postgres database when TEST_DATABASE_URL is set
 * (it starts in well under a second), else the in-memory PGlite (which can take seconds on a busy machine).
 */
export async function processStore(): Promise<{ env: Record<string, string>; drop(): Promise<void> }> {
  const base = process.env.TEST_DATABASE_URL
  if (!base) return { env: { SAGE_DATA_DIR: ':memory:' }, drop: async () => undefined }
  const database = await createPostgresDatabase(base)
  return { env: { DATABASE_URL: database.url }, drop: () => database.drop() }
}
