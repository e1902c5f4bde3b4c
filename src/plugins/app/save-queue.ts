import fp from 'fastify-plugin'
import { registerQueueGauges } from '../../metrics/sage-metrics.js'
import { createSaveQueue, type SaveQueue } from '../../queue/save-queue.js'

declare module 'fastify' {
  interface FastifyInstance {
    /** Asynchronous saves (`Prefer: respond-async`); saves synchronously when REDIS_URL is unset. */
    saveQueue: SaveQueue
  }
}

/** The save queue and, on every replica, its consumer: started once the app is ready, stopped before Redis closes. */
export default fp<{ consumer?: boolean }>(
  async (fastify, options) => {
    const { config, redis, metrics } = fastify
    const queue = createSaveQueue({
      redis,
      memories: fastify.memories,
      metrics,
      log: fastify.log,
      batchSize: config.QUEUE_BATCH_SIZE,
      claimIdleMs: config.QUEUE_CLAIM_IDLE_MS,
      maxAttempts: config.QUEUE_MAX_ATTEMPTS
    })
    fastify.decorate('saveQueue', queue)
    if (!queue.enabled) return
    fastify.memories.useQueue(queue)
    registerQueueGauges(metrics, () => queue.gauges())
    if (options.consumer !== false) fastify.addHook('onReady', () => queue.start())
    fastify.addHook('preClose', () => queue.stop())
  },
  { name: 'save-queue', dependencies: ['config', 'metrics', 'redis', 'memory-service'] }
)
