import { randomBytes } from 'node:crypto'
import pg from 'pg'

export interface BenchDatabase {
  name: string
  url: string
  /** e.g. "15.20" */
  serverVersion: string
  drop(): Promise<void>
}

/** A fresh, empty database on the server at `adminUrl`, so a run never sees or touches anyone's data. */
export async function createBenchDatabase(adminUrl: string): Promise<BenchDatabase> {
  const name = `sage_bench_${randomBytes(4).toString('hex')}`
  const admin = new pg.Client({ connectionString: adminUrl })
  await admin.connect()
  let serverVersion: string
  try {
    const { rows } = await admin.query<{ server_version: string }>('SHOW server_version')
    serverVersion = rows[0]?.server_version ?? 'unknown'
    await admin.query(`CREATE DATABASE ${name}`)
  } finally {
    await admin.end()
  }
  const url = new URL(adminUrl)
  url.pathname = `/${name}`
  return {
    name,
    url: url.toString(),
    serverVersion,
    async drop() {
      const client = new pg.Client({ connectionString: adminUrl })
      await client.connect()
      try {
        await client.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`)
      } finally {
        await client.end()
      }
    }
  }
}
