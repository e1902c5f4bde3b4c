import fp from 'fastify-plugin'
import { createCachingEmbedder } from '../../cache/caching-embedder.js'
import { createRecallCache } from '../../cache/recall-cache.js'
import { createEmbeddingBackfill, type EmbeddingBackfill } from '../../memory/embedding-backfill.js'
import { bindEmbedder } from '../../db/embedder-binding.js'
import { createMemoryStore } from '../../memory/memory-store.js'
import { createRecall } from '../../memory/recall.js'
import { createTermStatistics } from '../../memory/term-statistics.js'
import { createTermStatisticsFolder, type TermStatisticsFolder } from '../../memory/term-statistics-folder.js'
import { createVectorBacklog } from '../../memory/vector-backlog.js'
import { createMemoryService, type MemoryService } from '../../memory/memory-service.js'
import { createVectorIndexer, type VectorIndexer } from '../../memory/vector-indexer.js'
import { registerPoolGauge } from '../../metrics/sage-metrics.js'

declare module 'fastify' {
  interface FastifyInstance {
    memories: MemoryService
    backfill: EmbeddingBackfill
    vectorIndexer: VectorIndexer
    termStatisticsFolder: TermStatisticsFolder
  }
}

/** PGlite runs queries on the event loop: a batch of graph inserts there must stay short. */
const PGLITE_MAX_INDEX_BATCH = 16
/**
 * Memories whose terms one fold counts, and how often the folder looks: PGlite's folds run in the service's own
 * thread, so they come less often there and are not hurried by saves (recall counts what waits meanwhile).
 */
const TERM_FOLD_BATCH = { postgres: 5_000, pglite: 500 }
/** Terms one fold counts at most: a statement's time follows its terms (BENCHMARKS.md, "Large bodies and the event loop"). */
const TERM_FOLD_BUDGET = { postgres: 20_000, pglite: 5_000 }
const TERM_FOLD_INTERVAL_MS = { postgres: 1_000, pglite: 5_000 }

/** Save and recall over the store: binds the embedder to the stored vectors, then serves, indexes and backfills. */
export default fp<{ backfill?: boolean; vectorIndexer?: boolean; termStatisticsFolder?: boolean }>(
  async (fastify, options) => {
    const { db, embedder, metrics, config } = fastify
    fastify.storePreparation.addStep('embedder binding', (raw) => bindEmbedder(raw, embedder))
    const store = createMemoryStore(db)
    const recall = createRecall(db, embedder.dimension, { exactSearchMaxRows: config.RECALL_EXACT_MAX_MEMORIES, embedderKind: embedder.kind, vectorWeight: config.RECALL_VECTOR_WEIGHT })
    // Shared through Redis when it is configured. Without it, only the embedded store caches recalls in process:
    // replicas sharing a Postgres could not see each other's deletes, and a recall must never return a deleted memory.
    const recallCache = fastify.redis || db.kind === 'pglite' ? createRecallCache({ redis: fastify.redis, ttlSeconds: config.CACHE_TTL_SECONDS, metrics }) : undefined
    if (recallCache) fastify.addHook('onClose', async () => recallCache.close())
    else fastify.log.info('recalls are not cached: Postgres without REDIS_URL may have replicas whose deletes this process cannot see')
    const vectorIndexer = createVectorIndexer({
      backlog: createVectorBacklog(db),
      metrics,
      log: fastify.log,
      batchSize: db.kind === 'pglite' ? Math.min(config.VECTOR_INDEX_BATCH_SIZE, PGLITE_MAX_INDEX_BATCH) : config.VECTOR_INDEX_BATCH_SIZE,
      intervalMs: config.VECTOR_INDEX_INTERVAL_MS,
      yieldMs: config.VECTOR_INDEX_YIELD_MS,
      maxDeferred: config.VECTOR_INDEX_MAX_DEFERRED
    })
    fastify.decorate('vectorIndexer', vectorIndexer)
    if (options.vectorIndexer !== false && config.VECTOR_INDEXER) fastify.addHook('onReady', async () => vectorIndexer.start())
    fastify.addHook('preClose', () => vectorIndexer.stop())

    const termStatisticsFolder = createTermStatisticsFolder({
      statistics: createTermStatistics(db),
      log: fastify.log,
      batchSize: TERM_FOLD_BATCH[db.kind],
      termBudget: TERM_FOLD_BUDGET[db.kind],
      intervalMs: TERM_FOLD_INTERVAL_MS[db.kind]
    })
    fastify.decorate('termStatisticsFolder', termStatisticsFolder)
    if (options.termStatisticsFolder !== false) fastify.addHook('onReady', async () => termStatisticsFolder.start())
    fastify.addHook('preClose', () => termStatisticsFolder.stop())

    const memories = createMemoryService({
        db,
        store,
        recall,
        embedder: embedder.local ? embedder : createCachingEmbedder(embedder, { redis: fastify.redis, ttlSeconds: config.EMBEDDING_CACHE_TTL_SECONDS, metrics }),
        recallCache,
        metrics,
        log: fastify.log,
        redactSecrets: config.SAGE_REDACT_SECRETS,
        embedTimeoutMs: config.EMBEDDING_SAVE_TIMEOUT_MS,
        onWritten: (count) => {
          vectorIndexer.poke(count)
          if (db.kind === 'postgres') termStatisticsFolder.poke()
        },
        onWriting: vectorIndexer.saveStarted,
        onSaved: fastify.namespaceActivity.saved,
        onRecalled: fastify.namespaceActivity.recalled
    })
    fastify.decorate('memories', memories)
    fastify.addHook('onClose', () => memories.close())
    registerPoolGauge(metrics, () => db.poolStats())

    const backfill = createEmbeddingBackfill({
      // Vectors filled in change what recalls find, in any namespace.
      store: {
        unembedded: store.unembedded,
        countUnembedded: store.countUnembedded,
        async setEmbeddings(updates, embedderId) {
          const updated = await store.setEmbeddings(updates, embedderId)
          if (updated > 0) await recallCache?.invalidateAll()
          return updated
        }
      },
      embedder,
      metrics,
      log: fastify.log,
      batchSize: config.BACKFILL_BATCH_SIZE,
      intervalMs: config.BACKFILL_INTERVAL_MS,
      onEmbedderAvailable: memories.embedderRecovered
    })
    fastify.decorate('backfill', backfill)
    if (options.backfill !== false) fastify.addHook('onReady', async () => backfill.start())
    fastify.addHook('preClose', () => backfill.stop())
  },
  { name: 'memory-service', dependencies: ['config', 'database', 'embedder', 'metrics', 'redis', 'namespace-activity'] }
)
