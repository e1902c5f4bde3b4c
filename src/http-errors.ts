import type { FastifyError } from 'fastify'
import { STATUS_CODES } from 'node:http'
import { classifyFailure } from './classify-failure.js'
import { SageError } from './errors.js'

export interface ErrorReply {
  statusCode: number
  error: string
  code: string
  message: string
  headers: Record<string, string>
}

interface AjvError {
  instancePath: string
  keyword: string
  message?: string
  params: Record<string, unknown>
}

/** `/items/3/content` -> `items[3].content`, the way the contract names a field. */
export function fieldPath(instancePath: string, prefix = ''): string {
  let path = prefix
  for (const part of instancePath.split('/').slice(1)) {
    const name = part.replace(/~1/g, '/').replace(/~0/g, '~')
    path += /^\d+$/.test(name) ? `[${name}]` : path ? `.${name}` : name
  }
  return path
}

/** One readable sentence for the first validation failure, naming the field and the rule. */
export function describeValidation(errors: readonly AjvError[], context: string | undefined): string {
  const error = errors.find((e) => e.keyword !== 'anyOf' && e.keyword !== 'if') ?? errors[0]
  const where = context && context !== 'body' ? context : ''
  if (!error) return 'request is invalid'
  const field = fieldPath(error.instancePath, where)
  const subject = field || (where ? where : 'body')
  const p = error.params
  switch (error.keyword) {
    case 'required':
      return `${field ? `${field}.` : ''}${String(p.missingProperty)} is required`
    case 'additionalProperties':
      return `${subject} has an unknown field "${String(p.additionalProperty)}"`
    case 'type':
      return `${subject} must be ${p.type === 'object' ? 'an object' : p.type === 'array' ? 'an array' : `a ${String(p.type)}`}`
    case 'minLength':
      return p.limit === 1 ? `${subject} must be a non-empty string` : `${subject} must be at least ${String(p.limit)} characters`
    case 'maxLength':
      return `${subject} must be at most ${String(p.limit)} characters`
    case 'minItems':
      return `${subject} must have at least ${String(p.limit)} item${p.limit === 1 ? '' : 's'}`
    case 'maxItems':
      return `${subject} must have at most ${String(p.limit)} items`
    case 'minimum':
    case 'maximum':
      return `${subject} must be ${error.keyword === 'minimum' ? '>=' : '<='} ${String(p.limit)}`
    case 'enum':
      return `${subject} must be one of ${(p.allowedValues as unknown[]).join(', ')}`
    case 'pattern':
      return `${subject} has characters outside ${String(p.pattern)}`
    case 'format':
      return `${subject} must be a valid ${String(p.format)}`
    default:
      return `${subject} ${error.message ?? 'is invalid'}`
  }
}

function codeFor(statusCode: number): string {
  switch (statusCode) {
    case 400: return 'SAGE_BAD_REQUEST'
    case 401: return 'SAGE_UNAUTHORIZED'
    case 403: return 'SAGE_FORBIDDEN'
    case 404: return 'SAGE_NOT_FOUND'
    case 405: return 'SAGE_METHOD_NOT_ALLOWED'
    case 406: return 'SAGE_NOT_ACCEPTABLE'
    case 408: return 'SAGE_TIMEOUT'
    case 413: return 'SAGE_PAYLOAD_TOO_LARGE'
    case 415: return 'SAGE_UNSUPPORTED_MEDIA_TYPE'
    case 429: return 'SAGE_RATE_LIMITED'
    default: return statusCode >= 500 ? 'SAGE_INTERNAL' : 'SAGE_BAD_REQUEST'
  }
}

/** Maps any error to the contract's JSON shape; internals never reach a 5xx body. */
export function toErrorReply(error: unknown): ErrorReply {
  const make = (statusCode: number, code: string, message: string, headers: Record<string, string> = {}): ErrorReply => ({
    statusCode,
    error: STATUS_CODES[statusCode] ?? 'Error',
    code,
    message,
    headers
  })
  if (error instanceof SageError) return make(error.statusCode, error.code, error.message, error.headers)
  const fastifyError = error as FastifyError & { validation?: AjvError[]; validationContext?: string }
  if (fastifyError?.validation) {
    return make(400, 'SAGE_VALIDATION', describeValidation(fastifyError.validation, fastifyError.validationContext))
  }
  const failure = classifyFailure(error)
  if (failure.kind === 'dependency') {
    return make(503, 'SAGE_UNAVAILABLE', failure.reason, { 'retry-after': String(failure.retryAfterSeconds) })
  }
  const status = fastifyError?.statusCode
  if (failure.kind === 'caller' && typeof status === 'number') {
    const headers: Record<string, string> = {}
    const retryAfter = (fastifyError as { headers?: Record<string, string> }).headers?.['retry-after']
    if (retryAfter) headers['retry-after'] = retryAfter
    return make(status, codeFor(status), fastifyError.message, headers)
  }
  return make(500, 'SAGE_INTERNAL', 'internal error; the request id in the logs has the details')
}
