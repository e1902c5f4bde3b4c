import { EmbedderError } from './embedder/embedder-error.js'
import { SageError } from './errors.js'

/** The services Sage depends on, named in a 503 and in the outage log. */
export type Dependency = 'database' | 'redis' | 'embedder'

/**
 * What a failure says about whose it is, and so what to do with it:
 * - caller: the request itself is wrong (4xx); retrying it the same way never helps.
 * - dependency: a service Sage needs is down or busy; the same request later may well succeed (503 + Retry-After).
 * - bug: anything else; 500, logged with its stack, never retried.
 */
export type FailureClass =
  | { kind: 'caller'; statusCode: number }
  | { kind: 'dependency'; dependency: Dependency; state: 'down' | 'busy'; reason: string; retryAfterSeconds: number }
  | { kind: 'bug' }

/** Thrown where Sage itself knows a dependency is in trouble (the pool is exhausted, migrations are waiting). */
export class DependencyError extends Error {
  constructor(
    readonly dependency: Dependency,
    readonly state: 'down' | 'busy',
    message: string,
    readonly retryAfterSeconds = 5,
    options?: { cause?: unknown }
  ) {
    super(message, options)
    this.name = 'DependencyError'
  }
}

/** pg-pool's words when every pooled connection stayed busy for the whole connection timeout. */
export const POOL_EXHAUSTED_MESSAGE = 'timeout exceeded when trying to connect'
/** pg's words when the client-side query_timeout elapsed with no answer from the server. */
const QUERY_READ_TIMEOUT_MESSAGE = 'Query read timeout'

const NETWORK_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'ENOTFOUND', 'EHOSTUNREACH', 'ENETUNREACH', 'EAI_AGAIN'])
const CONNECTION_LOST = /Connection terminated|Client has encountered a connection error|connection is closed|Client was closed and is not queryable/i

const database = (state: 'down' | 'busy', reason: string, retryAfterSeconds = state === 'busy' ? 1 : 5): FailureClass =>
  ({ kind: 'dependency', dependency: 'database', state, reason, retryAfterSeconds })

/** Postgres SQLSTATEs (and pg's own errors) that say the database, not the request, is the trouble. */
function classifyDatabase(code: string, message: string): FailureClass | undefined {
  switch (code) {
    case '40P01': return database('busy', 'the database is busy: a deadlock was broken')
    case '40001': return database('busy', 'the database is busy: a serialization conflict')
    case '57014': return database('busy', 'the database did not answer within its statement timeout')
    case '55P03': return database('busy', 'the database is busy: a lock was not available in time')
    case '53300': return database('busy', 'the database is busy: it has no free connection slots')
    case '57P01': case '57P02': return database('down', 'the database is unavailable: it is shutting down')
    case '57P03': return database('down', 'the database is unavailable: it is starting up or recovering')
  }
  if (code.startsWith('08')) return database('down', 'the database is unavailable: the connection failed')
  if (code.startsWith('53') || code.startsWith('58')) return database('busy', 'the database is busy: it is short of resources')
  if (message === POOL_EXHAUSTED_MESSAGE) return database('busy', 'the database is busy: the connection pool is exhausted', 1)
  if (message === QUERY_READ_TIMEOUT_MESSAGE || /connection timeout/i.test(message)) return database('down', 'the database did not answer in time')
  if (CONNECTION_LOST.test(message)) return database('down', 'the database is unavailable: the connection was lost')
  return undefined
}

/** ioredis's errors: the connection is gone, a command timed out, or Sage refused to wait for a Redis known to be down. */
function classifyRedis(error: Error): FailureClass | undefined {
  const message = error.message
  if (message === 'Command timed out') return { kind: 'dependency', dependency: 'redis', state: 'down', reason: 'redis did not answer in time', retryAfterSeconds: 2 }
  // Redis's own error replies start with their upper-case code, so those are matched exactly.
  if (/Connection is closed|Stream isn't writeable|enableOfflineQueue|max retries per request|redis unavailable/i.test(message) || /^(LOADING|MASTERDOWN|BUSY) /.test(message)) {
    return { kind: 'dependency', dependency: 'redis', state: 'down', reason: 'redis is unavailable', retryAfterSeconds: 2 }
  }
  return undefined
}

/** The one place that says whose a failure is: the HTTP answer, the save queue and the hook retry buffer all ask here. */
export function classifyFailure(error: unknown): FailureClass {
  if (error instanceof SageError) {
    if (error.statusCode < 500) return { kind: 'caller', statusCode: error.statusCode }
    if (error.statusCode === 503) {
      const dependency: Dependency = error.code === 'SAGE_EMBEDDER_UNAVAILABLE' ? 'embedder' : 'database'
      return { kind: 'dependency', dependency, state: 'down', reason: error.message, retryAfterSeconds: Number(error.headers['retry-after']) || 5 }
    }
    return { kind: 'bug' }
  }
  if (error instanceof DependencyError) {
    return { kind: 'dependency', dependency: error.dependency, state: error.state, reason: error.message, retryAfterSeconds: error.retryAfterSeconds }
  }
  if (error instanceof EmbedderError) {
    return error.retryable ? { kind: 'dependency', dependency: 'embedder', state: 'down', reason: `the embedder is unavailable: ${error.message}`, retryAfterSeconds: 5 } : { kind: 'bug' }
  }
  if (!(error instanceof Error)) return { kind: 'bug' }
  const code = String((error as { code?: unknown }).code ?? '')
  const status = (error as { statusCode?: unknown }).statusCode
  // Fastify's own 4xx (a body too large, a bad content type) and validation errors.
  if (typeof status === 'number' && status >= 400 && status < 500) return { kind: 'caller', statusCode: status }
  if ((error as { validation?: unknown }).validation) return { kind: 'caller', statusCode: 400 }
  // A TypeError or RangeError is a bug in Sage whatever its message says.
  if (error instanceof TypeError || error instanceof RangeError || error instanceof SyntaxError || error instanceof ReferenceError) return { kind: 'bug' }
  const redis = classifyRedis(error)
  if (redis) return redis
  if (NETWORK_CODES.has(code)) {
    // ioredis errors name their host in the message; pg's carry the same codes. Redis's are recognised above.
    return database('down', code === 'ECONNREFUSED' ? 'the database is unavailable: it refused the connection' : `the database is unavailable: the connection failed (${code})`)
  }
  return classifyDatabase(code, error.message) ?? { kind: 'bug' }
}

/** Whether the failure says nothing about the request, so the same request may be tried again later. */
export const isDependencyFailure = (error: unknown): boolean => classifyFailure(error).kind === 'dependency'

/** Whether a pooled connection that saw this failure must be thrown away rather than reused. */
export function breaksConnection(error: unknown): boolean {
  const failure = classifyFailure(error)
  return failure.kind === 'dependency' && failure.dependency === 'database' && failure.state === 'down'
}

/** What a log line carries about a failure: a dependency's trouble in one phrase, anything else with its stack. */
export function failureFields(error: unknown): { reason: string } | { err: unknown } {
  const failure = classifyFailure(error)
  return failure.kind === 'dependency' ? { reason: failure.reason } : { err: error }
}
