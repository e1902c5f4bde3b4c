import fp from 'fastify-plugin'
import { createNamespaceActivity, type NamespaceActivity } from '../../memory/namespace-activity.js'

declare module 'fastify' {
  interface FastifyInstance {
    namespaceActivity: NamespaceActivity
  }
}

/** Saves and recalls per namespace over the last day (the overview), flushed to the store in rounds. */
export default fp(
  async (fastify) => {
    const activity = createNamespaceActivity(fastify.db, fastify.log)
    fastify.decorate('namespaceActivity', activity)
    fastify.addHook('onReady', async () => activity.start())
    // Before the store closes: the last counts are written.
    fastify.addHook('onClose', () => activity.stop())
  },
  { name: 'namespace-activity', dependencies: ['database'] }
)
