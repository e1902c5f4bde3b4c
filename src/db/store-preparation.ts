import type { FastifyBaseLogger } from 'fastify'
import { classifyFailure, DependencyError } from '../classify-failure.js'
import type { Database } from './database.js'
import { backoffDelay } from '../backoff.js'

/** Retries of a preparation the database was not there for back off up to this. */
const MAX_RETRY_DELAY_MS = 5_000

export interface StorePreparation {
  /** The store as the app uses it: until every step has run, each call fails as "the database is not ready". */
  readonly db: Database
  /** A step run, in order, before the store is used: migrations, the embedder binding. */
  addStep(name: string, step: (db: Database) => Promise<void>): void
  isDone(): boolean
  /**
   * Runs the steps once. When the database is down it resolves anyway and keeps retrying in the background, so the
   * service serves (503 meanwhile) and gets ready by itself; any other failure rejects, and the start fails.
   */
  start(): Promise<void>
  stop(): void
}

export function createStorePreparation(raw: Database, log: FastifyBaseLogger): StorePreparation {
  const steps: Array<{ name: string; step: (db: Database) => Promise<void> }> = []
  let done = false
  let stopped = false
  let timer: NodeJS.Timeout | undefined
  let failure: Error | undefined

  const notReady = () =>
    failure
      ? new DependencyError('database', 'down', `the store could not be prepared (${failure.message}); see the log`, 30)
      : new DependencyError('database', 'down', 'the database is not ready: Sage prepares it (migrations) as soon as it answers')
  const gate = async () => {
    if (!done) throw notReady()
  }
  const db: Database = {
    kind: raw.kind,
    query: async (sql, params, options) => (await gate(), raw.query(sql, params, options)),
    exec: async (sql) => (await gate(), raw.exec(sql)),
    transaction: async (work) => (await gate(), raw.transaction(work)),
    withConnection: async (work) => (await gate(), raw.withConnection(work)),
    poolStats: () => raw.poolStats(),
    close: () => raw.close()
  }

  async function runSteps(): Promise<void> {
    for (const { step } of steps) await step(raw)
    done = true
  }

  function retry(delayMs: number, attempts: number): void {
    if (stopped) return
    timer = setTimeout(() => {
      runSteps().then(
        () => log.info({ attempts }, 'the database answered: migrations and the embedder binding are done; serving'),
        (error: unknown) => {
          if (classifyFailure(error).kind === 'dependency') return retry(backoffDelay(attempts - 1, 250, MAX_RETRY_DELAY_MS), attempts + 1)
          failure = error as Error
          log.error({ err: error }, 'preparing the store failed; data requests answer 503 until the service is restarted with this fixed')
        }
      )
    }, delayMs)
    timer.unref()
  }

  return {
    db,
    addStep: (name, step) => void steps.push({ name, step }),
    isDone: () => done,
    async start() {
      try {
        await runSteps()
      } catch (error) {
        const failed = classifyFailure(error)
        if (failed.kind !== 'dependency') throw error
        log.warn({ reason: failed.reason, err_message: (error as Error).message }, 'the database is unreachable at start; serving 503 for data requests and preparing it once it answers')
        retry(250, 2)
      }
    },
    stop() {
      stopped = true
      clearTimeout(timer)
    }
  }
}
