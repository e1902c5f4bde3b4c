import type { FastifyBaseLogger } from 'fastify'
import { failureFields } from './classify-failure.js'

export interface RoundFailures {
  /** A round failed: a dependency's trouble is a warning for the first round of a run and debug after; a bug always warns, with its stack. */
  failed(error: unknown, fields?: Record<string, unknown>): void
  /** A round succeeded: after failures, one line saying how many rounds failed and for how long. */
  succeeded(): void
}

/**
 * How a background loop (the vector indexer, the term fold, the hook retry buffer…) reports rounds that fail while
 * a dependency is away: one warning when they start, one line when a round works again, the count in between,
 * instead of a warning every round of an outage.
 */
export function createRoundFailures(log: FastifyBaseLogger, loop: string, message: string): RoundFailures {
  let failedRounds = 0
  let since = 0
  return {
    failed(error, fields = {}) {
      const failure = failureFields(error)
      if (failedRounds === 0) since = Date.now()
      // An outage's reason changes as it goes (connection lost, refused, starting up): still one outage.
      if (failedRounds === 0 || !('reason' in failure)) log.warn({ ...failure, ...fields }, message)
      else log.debug({ ...failure, ...fields, failed_rounds: failedRounds + 1 }, message)
      failedRounds++
    },
    succeeded() {
      if (failedRounds === 0) return
      log.info({ failed_rounds: failedRounds, failing_ms: Date.now() - since }, `${loop} works again`)
      failedRounds = 0
    }
  }
}
