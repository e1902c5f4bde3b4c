import rateLimit from '@fastify/rate-limit'
import type { FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import { ErrorBody } from '../../memory/memory-schemas.js'

/** Probes, scrapes and the API document are never limited; hooks are, like /v1 (a hook passes the 429 on, which Claude Code ignores). */
const EXEMPT = /^\/(health|metrics|docs)([/?]|$)/

/** Per API key when the caller presented a valid one, else per address: a bad key cannot buy a fresh allowance. */
export function rateLimitKey(request: FastifyRequest): string {
  const keyName = (request as { access?: { keyName?: string | null } | null }).access?.keyName
  return keyName ? `key:${keyName}` : `ip:${request.ip}`
}

/**
 * @fastify/rate-limit over every route registered after it: shared between replicas through Redis when
 * REDIS_URL is set (its Redis store, one counter per client and window), in process otherwise.
 * RATE_LIMIT_MAX and RATE_LIMIT_WINDOW_MS are read per request, so a reload (SIGHUP) changes them at once;
 * RATE_LIMIT_MAX=0 lets every request through.
 */
export default fp(
  async (fastify) => {
    const { config, redis } = fastify
    // The OpenAPI document shows the 429 on every limited route.
    fastify.addHook('onRoute', (route) => {
      const response = route.schema?.response as Record<string, unknown> | undefined
      if (response && !EXEMPT.test(route.url)) route.schema = { ...route.schema, response: { ...response, 429: ErrorBody } }
    })
    await fastify.register(rateLimit, {
      global: true,
      max: () => config.RATE_LIMIT_MAX,
      timeWindow: () => config.RATE_LIMIT_WINDOW_MS,
      redis: redis?.commands,
      nameSpace: `${config.REDIS_KEY_PREFIX}ratelimit:`,
      // Redis unreachable: serve rather than refuse; the limit resumes when it answers.
      skipOnError: true,
      keyGenerator: rateLimitKey,
      // Also while Redis is known down, so no request waits out a command timeout for its count.
      allowList: (request) => config.RATE_LIMIT_MAX === 0 || EXEMPT.test(request.url) || (redis !== undefined && !redis.available()),
      errorResponseBuilder: (_request, context) =>
        Object.assign(new Error(`rate limit of ${context.max} requests per ${Math.round(config.RATE_LIMIT_WINDOW_MS / 1000)} s exceeded; retry in ${context.after}`), {
          statusCode: context.statusCode
        })
    })
  },
  { name: 'rate-limit', dependencies: ['config', 'redis'] }
)
