import fp from 'fastify-plugin'
import type { Database } from '../../db/database.js'
import { createDatabase } from '../../db/create-database.js'
import { migrate } from '../../db/migrate.js'
import { createStorePreparation, type StorePreparation } from '../../db/store-preparation.js'

declare module 'fastify' {
  interface FastifyInstance {
    db: Database
    storePreparation: StorePreparation
  }
}

/**
 * The store, migrated before the first request; closed last on shutdown. A store handed in by the caller is not
 * closed. A database that is down at start does not stop it: the service serves 503 and migrates once it answers.
 */
export default fp<{ database?: Database }>(
  async (fastify, options) => {
    // An idle connection losing its server is reported by the requests that find it down, once per outage.
    const raw = options.database ?? (await createDatabase(fastify.config, (error) => fastify.log.debug({ err: error }, 'idle database connection failed')))
    if (!options.database) fastify.addHook('onClose', () => raw.close())
    const preparation = createStorePreparation(raw, fastify.log)
    fastify.decorate('db', preparation.db)
    fastify.decorate('storePreparation', preparation)
    preparation.addStep('migrations', async (db) => {
      const applied = await migrate(db)
      await db.registerVectorType?.()
      // Fresh planner statistics, so filtered and vector queries get their indexes (PGlite has no autovacuum).
      await db.query('ANALYZE memories, memory_vectors, vector_backlog')
      if (applied.length > 0) fastify.log.info({ applied, store: db.kind }, 'applied migrations')
    })
    // First of the onReady hooks: the background workers start on a prepared store, or wait on its gate.
    fastify.addHook('onReady', () => preparation.start())
    fastify.addHook('preClose', async () => preparation.stop())
  },
  { name: 'database', dependencies: ['config'] }
)
