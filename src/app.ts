import autoload from '@fastify/autoload'
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import Fastify, { LogController, type FastifyInstance, type FastifyServerOptions } from 'fastify'
import { randomUUID } from 'node:crypto'
import { fileURLToPath } from 'node:url'
import type { Config } from './config.js'
import type { Database } from './db/database.js'
import type { Embedder } from './embedder/embedder.js'
import accessPlugin from './plugins/app/access.js'
import configReloadPlugin from './plugins/app/config-reload.js'
import dependencyOutagesPlugin from './plugins/app/dependency-outages.js'
import embedderPlugin from './plugins/app/embedder.js'
import errorHandler from './plugins/app/error-handler.js'
import injectionLogPlugin from './plugins/app/injection-log.js'
import namespaceActivityPlugin from './plugins/app/namespace-activity.js'
import memoryServicePlugin from './plugins/app/memory-service-plugin.js'
import saveQueuePlugin from './plugins/app/save-queue.js'
import warmUpPlugin from './plugins/app/warm-up.js'
import configPlugin from './plugins/external/config.js'
import databasePlugin from './plugins/external/database.js'
import metricsPlugin from './plugins/external/metrics.js'
import rateLimitPlugin from './plugins/external/rate-limit.js'
import redisPlugin from './plugins/external/redis.js'
import swaggerPlugin from './plugins/external/swagger.js'
import { validatorCompiler } from './validation.js'

/** Compiled routes sit in dist/routes, beside dist/src; from source they are the top-level routes/. */
const ROUTES_DIR = fileURLToPath(new URL('../routes', import.meta.url))

export interface AppOptions {
  /** A store owned by the caller (tests share one); otherwise the app opens and closes its own. */
  database?: Database
  embedder?: Embedder
  /** Run the background embedding backfill (tests drive it by hand). Default true. */
  backfill?: boolean
  /** Run the background vector indexer (tests drive it by hand). Default true. */
  vectorIndexer?: boolean
  /** Fold the term statistics in the background (tests drive it by hand). Default true. */
  termStatisticsFolder?: boolean
  /** Run this replica's save-queue consumer when Redis is configured (tests inspect the queue without it). Default true. */
  queueConsumer?: boolean
  logger?: FastifyServerOptions['logger']
  /** How a reload reads the configuration again; default loadConfig() (the environment over SAGE_ENV_FILE). */
  readConfig?: () => Config
}

/** Human-readable lines for a person at a terminal; JSON lines for the journal, files and log shippers. */
export function logsArePretty(config: Pick<Config, 'LOG_FORMAT'>, terminal = process.stdout.isTTY === true): boolean {
  return config.LOG_FORMAT === 'pretty' || (config.LOG_FORMAT === 'auto' && terminal)
}

/** The requests that probes and scrapers repeat all day: logged at debug while they succeed, so info shows real traffic. */
const PROBE = /^\/(health|metrics)([/?]|$)/

export function loggerOptions(config: Config): FastifyServerOptions['logger'] {
  return {
    level: config.LOG_LEVEL,
    // Keys never reach the logs.
    redact: { paths: ['req.headers.authorization', 'req.headers["x-api-key"]', 'headers.authorization', 'headers["x-api-key"]'], censor: '[redacted]' }
  }
}

/** The whole application: Fastify with Sage's plugins and routes, not yet listening. */
export async function buildApp(config: Config, options: AppOptions = {}): Promise<FastifyInstance> {
  // Loaded only when used: importing pino-pretty would slow every start (BENCHMARKS.md, "Figures behind the code").
  const pretty = options.logger === undefined && logsArePretty(config) ? (await import('pino-pretty')).default({ colorize: true, sync: true }) : undefined
  const app = Fastify({
    logger: options.logger ?? { ...(loggerOptions(config) as object), ...(pretty ? { stream: pretty } : {}) },
    bodyLimit: config.BODY_LIMIT_BYTES,
    // No limit: migrating, or building the vector index over a large store, takes minutes, and the service only
    // listens once it is done, so nothing is served half-ready meanwhile.
    pluginTimeout: 0,
    requestTimeout: config.REQUEST_TIMEOUT_MS,
    // Correlate with the caller's id when it sends one.
    requestIdHeader: 'x-request-id',
    // One access line per request (below) instead of Fastify's two: under load, logging is a real share of the CPU (BENCHMARKS.md, "Figures behind the code").
    logController: new LogController({ disableRequestLogging: true }),
    genReqId: () => randomUUID(),
    // /v1/memories and /v1/memories/ are one resource.
    routerOptions: { ignoreTrailingSlash: true },
    // Claude Code and curl send JSON; prototype-polluting keys are refused, not silently dropped.
    onProtoPoisoning: 'error',
    onConstructorPoisoning: 'error'
  }).withTypeProvider<TypeBoxTypeProvider>()
  app.setValidatorCompiler(validatorCompiler)
  // JSON only: any other media type is a 415 (the hook route adds its own lenient parser).
  app.removeContentTypeParser('text/plain')

  app.addHook('onResponse', async (request, reply) => {
    const level = reply.statusCode < 400 && PROBE.test(request.url) ? 'debug' : 'info'
    request.log[level]({ req: request, res: reply, responseTime: reply.elapsedTime }, 'request completed')
  })

  // Responses finished during shutdown close their keep-alive socket, so close() need not wait out the idle timeout.
  let closing = false
  app.addHook('preClose', async () => {
    closing = true
  })
  app.addHook('onSend', async (_request, reply) => {
    if (closing) reply.header('connection', 'close')
  })

  await app.register(configPlugin, { config })
  await app.register(errorHandler)
  await app.register(accessPlugin)
  await app.register(configReloadPlugin, { read: options.readConfig })
  await app.register(metricsPlugin)
  await app.register(swaggerPlugin)
  await app.register(redisPlugin)
  // Before the routes: it limits the routes registered after it.
  await app.register(rateLimitPlugin)
  await app.register(databasePlugin, { database: options.database })
  await app.register(embedderPlugin, { embedder: options.embedder })
  await app.register(dependencyOutagesPlugin)
  await app.register(namespaceActivityPlugin)
  await app.register(injectionLogPlugin)
  await app.register(memoryServicePlugin, { backfill: options.backfill, vectorIndexer: options.vectorIndexer, termStatisticsFolder: options.termStatisticsFolder })
  await app.register(saveQueuePlugin, { consumer: options.queueConsumer })
  await app.register(warmUpPlugin)
  await app.register(autoload, { dir: ROUTES_DIR, autoHooks: true, cascadeHooks: true, ignorePattern: /\.(d\.ts|map)$/ })
  return app
}
