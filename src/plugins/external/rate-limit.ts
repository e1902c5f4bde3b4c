import rateLimit from '@fastify/rate-limit'
import type { FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import { SageError } from '../../errors.js'
import { ErrorBody } from '../../memory/memory-schemas.js'

/** Probes, scrapes and the API document are never limited; hooks are, like /v1 (a hook passes the 429 on, which Claude Code ignores). */
const EXEMPT = /^\/(health|metrics|docs)([/?]|$)/

/** Per API key when the caller presented a valid one, else per address: a bad key cannot buy a fresh allowance. */
export function rateLimitKey(request: FastifyRequest): string {
  const keyName = (request as { access?: { keyName?: string | null } | null }).access?.keyName
  return keyName ? `key:${keyName}` : `ip:${request.ip}`
}

declare module 'fastify' {
  interface FastifyInstance {
    /**
     * Counts a failed authentication against the caller's address and answers the refusal to send: the 401 it is
     * given, or a 429 once the address has failed RATE_LIMIT_MAX times in the window, so keys cannot be guessed fast.
     */
    refuseAuthentication(request: FastifyRequest, unauthorized: SageError): Promise<SageError>
  }
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
    const limiterOff = () => config.RATE_LIMIT_MAX === 0 || (redis !== undefined && !redis.available())
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
      allowList: (request) => limiterOff() || EXEMPT.test(request.url),
      errorResponseBuilder: (_request, context) => limited(context.max, context.after, context.statusCode)
    })
    const limited = (max: number, after: string, statusCode = 429) =>
      Object.assign(new Error(`rate limit of ${max} requests per ${Math.round(config.RATE_LIMIT_WINDOW_MS / 1000)} s exceeded; retry in ${after}`), { statusCode })

    // The route limiter runs after authentication, so a request refused with 401 never reaches it: failed
    // authentications have their own counter per address, on every route that needs a key (hooks included).
    const countFailure = fastify.createRateLimit({ keyGenerator: (request) => `failed-auth:${request.ip}`, allowList: limiterOff })
    fastify.decorate('refuseAuthentication', async (request: FastifyRequest, unauthorized: SageError) => {
      const count = await countFailure(request)
      if (count.isAllowed || !count.isExceeded) return unauthorized
      const seconds = String(count.ttlInSeconds)
      return new SageError(429, 'SAGE_RATE_LIMITED', limited(count.max, `${seconds} seconds`).message, {
        'retry-after': seconds,
        'x-ratelimit-limit': String(count.max),
        'x-ratelimit-remaining': '0',
        'x-ratelimit-reset': seconds
      })
    })
  },
  { name: 'rate-limit', dependencies: ['config', 'redis'] }
)
