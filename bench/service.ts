import { startSage, type SageProcess } from '../test/support/sage-process.js'

export interface ServiceOptions {
  /** Postgres URL, or undefined for the embedded PGlite store under `dataDir`. */
  databaseUrl?: string
  dataDir: string
  /** Where the service's own output goes, so a failure can be read afterwards. */
  logFile: string
}

/** Variables of this shell a benchmark's service must not take: it picks its own port, store and (no) Redis. */
const NOT_INHERITED = new Set(['PORT', 'HOST', 'DATABASE_URL', 'REDIS_URL'])

/**
 * `sage-memory serve` as the benchmarks run it: this shell's environment (so EMBEDDING_* and the like reach it),
 * the default configuration without Redis (saves synchronous, caches and limits in the process), and no rate limit
 * a load test could meet (the limiter still runs on every request, as in production).
 */
export async function startService(options: ServiceOptions): Promise<SageProcess> {
  const inherited = Object.entries(process.env).filter((entry): entry is [string, string] => entry[1] !== undefined && !NOT_INHERITED.has(entry[0]))
  const env: Record<string, string> = {
    ...Object.fromEntries(inherited),
    LOG_LEVEL: 'warn',
    SAGE_DATA_DIR: options.dataDir,
    RATE_LIMIT_MAX: '1000000000',
    ...(options.databaseUrl ? { DATABASE_URL: options.databaseUrl } : {})
  }
  return startSage(env, 120_000, { logFile: options.logFile })
}
