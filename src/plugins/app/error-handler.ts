import fp from 'fastify-plugin'
import type { Config } from '../../config.js'
import { classifyFailure } from '../../classify-failure.js'
import { toErrorReply } from '../../http-errors.js'

function bodyTooLarge(limit: number | undefined, config: Config | undefined): string {
  const setting = !config ? undefined
    : limit === config.BATCH_BODY_LIMIT_BYTES ? 'BATCH_BODY_LIMIT_BYTES'
    : limit === config.BODY_LIMIT_BYTES ? 'BODY_LIMIT_BYTES' : undefined
  return limit === undefined ? 'request body is too large' : `request body is larger than the limit of ${limit} bytes${setting ? ` (${setting})` : ''}`
}

/**
 * Every error in the contract's shape: 4xx logged as warnings, bugs as errors with their cause; a dependency's
 * 503 is counted in its outage (one line when it goes down), not logged per request.
 */
export default fp(
  async (fastify) => {
    fastify.setErrorHandler((error, request, reply) => {
      const body = toErrorReply(error)
      // Fastify's own 413 does not say what the limit is.
      if ((error as { code?: string }).code === 'FST_ERR_CTP_BODY_TOO_LARGE') body.message = bodyTooLarge(request.routeOptions.bodyLimit, fastify.config)
      const failure = classifyFailure(error)
      if (failure.kind === 'dependency') {
        fastify.outages?.refused(failure.dependency, failure.reason)
        request.log.debug({ dependency: failure.dependency, message: body.message }, 'request refused: a dependency is down or busy')
      } else if (body.statusCode >= 500) request.log.error({ err: error }, 'request failed')
      else request.log.warn({ code: body.code, message: body.message }, 'request rejected')
      const { headers, ...payload } = body
      return reply.code(body.statusCode).headers(headers).send(payload)
    })
    fastify.setNotFoundHandler((request, reply) =>
      reply.code(404).send({ statusCode: 404, error: 'Not Found', code: 'SAGE_NOT_FOUND', message: `no route ${request.method} ${request.url.split('?')[0]}` })
    )
  },
  { name: 'error-handler' }
)
