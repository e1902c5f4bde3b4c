import type { FastifyBaseLogger } from 'fastify'
import type { Embedder } from '../embedder/embedder.js'
import type { SageMetrics } from '../metrics/sage-metrics.js'
import type { MemoryStore } from './memory-store.js'
import { createRoundFailures } from '../round-failures.js'

export interface BackfillOptions {
  store: Pick<MemoryStore, 'unembedded' | 'countUnembedded' | 'setEmbeddings'>
  embedder: Embedder
  metrics: SageMetrics
  log: FastifyBaseLogger
  batchSize: number
  intervalMs: number
  /** Called after the embedder answered, so callers that were skipping it can use it again. */
  onEmbedderAvailable?: () => void
}

/**
 * Embeds memories that were saved while the embedder was slow or down. Until then they are found by
 * full-text recall. Several replicas may run it at once: the update only fills embeddings still missing.
 */
export function createEmbeddingBackfill(options: BackfillOptions) {
  const { store, embedder, metrics, log } = options
  const failures = createRoundFailures(log, 'the embedding backfill', 'backfill round failed; retrying later')
  let timer: NodeJS.Timeout | undefined
  let running: Promise<number> | undefined
  let stopped = false

  async function drain(): Promise<number> {
    let total = 0
    while (!stopped) {
      const pending = await store.unembedded(options.batchSize)
      if (pending.length === 0) break
      const vectors = await embedder.embed(pending.map((p) => p.content), AbortSignal.timeout(60_000))
      options.onEmbedderAvailable?.()
      const updated = await store.setEmbeddings(pending.map((p, i) => ({ id: p.id, embedding: vectors[i]! })), embedder.id)
      total += updated
      metrics.backfillEmbedded.inc(updated)
      if (pending.length < options.batchSize) break
    }
    metrics.backfillBacklog.set(await store.countUnembedded())
    return total
  }

  /** One round now; concurrent callers share it. Resolves to how many memories it embedded. */
  function runOnce(): Promise<number> {
    running ??= drain().finally(() => {
      running = undefined
    })
    return running
  }

  function schedule(): void {
    if (stopped) return
    timer = setTimeout(() => {
      runOnce()
        .then((n) => {
          failures.succeeded()
          if (n > 0) log.info({ embedded: n }, 'backfill embedded memories saved without a vector')
        })
        .catch((error: unknown) => failures.failed(error))
        .finally(schedule)
    }, options.intervalMs)
    timer.unref()
  }

  return {
    runOnce,
    start(): void {
      stopped = false
      schedule()
    },
    async stop(): Promise<void> {
      stopped = true
      if (timer) clearTimeout(timer)
      await running?.catch(() => undefined)
    }
  }
}

export type EmbeddingBackfill = ReturnType<typeof createEmbeddingBackfill>
