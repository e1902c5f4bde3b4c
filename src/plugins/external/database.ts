import fp from 'fastify-plugin'
import type { Database } from '../../db/database.js'
import { createDatabase } from '../../db/create-database.js'
import { migrate } from '../../db/migrate.js'

declare module 'fastify' {
  interface FastifyInstance {
    db: Database
  }
}

/** The store, migrated before the first request; closed last on shutdown. A store handed in by the caller is not closed. */
export default fp<{ database?: Database }>(
  async (fastify, options) => {
    const db = options.database ?? (await createDatabase(fastify.config, (error) => fastify.log.warn({ err: error }, 'idle database connection failed')))
    fastify.decorate('db', db)
    if (!options.database) fastify.addHook('onClose', () => db.close())
    const applied = await migrate(db)
    await db.registerVectorType?.()
    // Fresh planner statistics, so filtered and vector queries get their indexes (PGlite has no autovacuum).
    await db.query('ANALYZE memories, memory_vectors, vector_backlog')
    if (applied.length > 0) fastify.log.info({ applied, store: db.kind }, 'applied migrations')
  },
  { name: 'database', dependencies: ['config'] }
)
