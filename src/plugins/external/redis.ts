import fp from 'fastify-plugin'
import { createRedisClients, type RedisClients } from '../../redis/redis-clients.js'

declare module 'fastify' {
  interface FastifyInstance {
    /** Redis clients by role; undefined when REDIS_URL is unset. */
    redis: RedisClients | undefined
  }
}

/** ioredis clients per role when REDIS_URL is set, closed last on shutdown (after the queue has stopped reading). */
export default fp(
  async (fastify) => {
    const { config } = fastify
    if (!config.REDIS_URL) {
      fastify.decorate('redis', undefined)
      return
    }
    const clients = await createRedisClients(
      {
        url: config.REDIS_URL,
        keyPrefix: config.REDIS_KEY_PREFIX,
        commandTimeoutMs: config.REDIS_COMMAND_TIMEOUT_MS,
        onAvailability: (up) => fastify.metrics.dependencyUp.set({ dependency: 'redis' }, up ? 1 : 0)
      },
      fastify.log
    )
    fastify.decorate('redis', clients)
    if (clients.available()) {
      const persistence = await clients.persistence()
      fastify.metrics.redisDurable.set(persistence === 'unknown' ? -1 : persistence === 'none' ? 0 : 1)
      if (persistence === 'none') {
        fastify.log.warn({ appendonly: 'no', save: '' }, 'redis keeps nothing across its own restart (no AOF, no RDB snapshots): asynchronous saves it acknowledged but Sage has not yet written would be lost; turn on appendonly (docs/redis.md)')
      }
    }
    fastify.addHook('onClose', () => clients.close())
  },
  { name: 'redis', dependencies: ['config', 'metrics'] }
)
