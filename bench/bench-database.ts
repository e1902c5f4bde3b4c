import pg from 'pg'
import { createPostgresDatabase } from '../test/helper.js'

export interface BenchDatabase {
  name: string
  url: string
  /** e.g. "15.20" */
  serverVersion: string
  drop(): Promise<void>
}

/** A fresh, empty database on the server at `adminUrl` (as the tests make theirs), so a run never sees or touches anyone's data. */
export async function createBenchDatabase(adminUrl: string): Promise<BenchDatabase> {
  const database = await createPostgresDatabase(adminUrl, 'sage_bench')
  const client = new pg.Client({ connectionString: database.url })
  await client.connect()
  try {
    const { rows } = await client.query<{ server_version: string }>('SHOW server_version')
    return { ...database, serverVersion: rows[0]?.server_version ?? 'unknown' }
  } finally {
    await client.end()
  }
}
