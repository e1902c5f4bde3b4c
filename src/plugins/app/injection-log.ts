import fp from 'fastify-plugin'
import { createInjectionLog, type InjectionLog } from '../../hooks/injection-log.js'
import { createInjectionStore } from '../../hooks/injection-store.js'

declare module 'fastify' {
  interface FastifyInstance {
    injections: InjectionLog
  }
}

const DAY_MS = 86_400_000

/** The trace of what the hooks injected and why (GET /v1/injections), within INJECTIONS_MAX_ROWS and INJECTIONS_MAX_AGE_DAYS. */
export default fp(
  async (fastify) => {
    const { config } = fastify
    const injections = createInjectionLog({
      store: createInjectionStore(fastify.db),
      log: fastify.log,
      maxRows: config.INJECTIONS_MAX_ROWS,
      maxAgeMs: config.INJECTIONS_MAX_AGE_DAYS * DAY_MS
    })
    fastify.decorate('injections', injections)
    fastify.addHook('onClose', () => injections.close())
  },
  { name: 'injection-log', dependencies: ['config', 'database'] }
)
