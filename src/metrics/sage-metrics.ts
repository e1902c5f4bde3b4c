import { Counter, Gauge, Histogram, collectDefaultMetrics, Registry } from 'prom-client'

/** Every metric Sage exports, on a registry the app owns (tests build as many apps as they like). */
export function createSageMetrics() {
  const registry = new Registry()
  collectDefaultMetrics({ register: registry })

  return {
    registry,
    httpDuration: new Histogram({
      name: 'http_request_duration_seconds',
      help: 'HTTP request duration by method, route pattern and status code',
      labelNames: ['method', 'route', 'status_code'] as const,
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      registers: [registry]
    }),
    saves: new Counter({
      name: 'sage_saves_total',
      help: 'Memories saved, by kind of call (single, batch, turn, hook, queued, mcp) and outcome (created, duplicate, rejected, failed)',
      labelNames: ['kind', 'outcome'] as const,
      registers: [registry]
    }),
    recallDuration: new Histogram({
      name: 'sage_recall_duration_seconds',
      help: 'Recall duration by mode, including the query embedding',
      labelNames: ['mode'] as const,
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1],
      registers: [registry]
    }),
    embeddingDuration: new Histogram({
      name: 'sage_embedding_duration_seconds',
      help: 'Time to embed one call\'s texts, by embedder and outcome',
      labelNames: ['embedder', 'outcome'] as const,
      buckets: [0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10],
      registers: [registry]
    }),
    embeddedTexts: new Counter({
      name: 'sage_embedded_texts_total',
      help: 'Texts embedded, by embedder',
      labelNames: ['embedder'] as const,
      registers: [registry]
    }),
    redactions: new Counter({
      name: 'sage_redactions_total',
      help: 'Secrets replaced by a [REDACTED:kind] marker before saving, by kind',
      labelNames: ['kind'] as const,
      registers: [registry]
    }),
    backfillBacklog: new Gauge({
      name: 'sage_backfill_backlog',
      help: 'Memories saved without an embedding, waiting for the backfill (as of its last round)',
      registers: [registry]
    }),
    vectorBacklog: new Gauge({
      name: 'sage_vector_backlog',
      help: 'Vectors saved but not yet in the HNSW graph; recall searches them exactly (as of the indexer\'s last count)',
      registers: [registry]
    }),
    vectorsIndexed: new Counter({
      name: 'sage_vectors_indexed_total',
      help: 'Vectors the background indexer moved into the HNSW graph (backlog entries of deleted memories are dropped, not counted)',
      registers: [registry]
    }),
    backfillEmbedded: new Counter({
      name: 'sage_backfill_embedded_total',
      help: 'Memories embedded by the background backfill',
      registers: [registry]
    }),
    queueEntries: new Counter({
      name: 'sage_queue_entries_total',
      help: 'Save-queue entries by event: queued, written, duplicate (already stored), retried, dead_lettered, replayed, and fallback (saved synchronously because Redis was unreachable)',
      labelNames: ['event'] as const,
      registers: [registry]
    }),
    queueLag: new Histogram({
      name: 'sage_queue_lag_seconds',
      help: 'From a queued save being acknowledged to its commit in the store',
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300],
      registers: [registry]
    }),
    cacheHits: new Counter({
      name: 'sage_cache_hits_total',
      help: 'Cache hits by cache (embedding, recall)',
      labelNames: ['cache'] as const,
      registers: [registry]
    }),
    cacheMisses: new Counter({
      name: 'sage_cache_misses_total',
      help: 'Cache misses by cache (embedding, recall)',
      labelNames: ['cache'] as const,
      registers: [registry]
    }),
    dependencyUp: new Gauge({
      name: 'sage_dependency_up',
      help: 'Whether a dependency (database, redis, embedder) answers: 0 from the first request it failed until it answers again',
      labelNames: ['dependency'] as const,
      registers: [registry]
    }),
    dependencyRefused: new Counter({
      name: 'sage_dependency_refused_total',
      help: 'Requests answered 503 because a dependency (database, redis, embedder) was down or busy',
      labelNames: ['dependency'] as const,
      registers: [registry]
    }),
    redisDurable: new Gauge({
      name: 'sage_redis_durable',
      help: 'Whether Redis keeps acknowledged asynchronous saves across its own restart (AOF or RDB snapshots on); -1 when it cannot be told (CONFIG disabled)',
      registers: [registry]
    }),
    mcpToolCalls: new Histogram({
      name: 'sage_mcp_tool_call_duration_seconds',
      help: 'MCP tool calls by tool and outcome (ok, invalid, forbidden, not_found, unavailable, error), with their duration; _count counts the calls',
      labelNames: ['tool', 'outcome'] as const,
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers: [registry]
    })
  }
}

export type SageMetrics = ReturnType<typeof createSageMetrics>

/** The pool gauge reads the live pool at scrape time rather than being updated on every checkout. */
export function registerPoolGauge(metrics: SageMetrics, stats: () => { total: number; idle: number; waiting: number }): void {
  new Gauge({
    name: 'sage_db_pool_connections',
    help: 'Database pool connections by state (total, idle, waiting requests)',
    labelNames: ['state'] as const,
    registers: [metrics.registry],
    collect() {
      const { total, idle, waiting } = stats()
      this.set({ state: 'total' }, total)
      this.set({ state: 'idle' }, idle)
      this.set({ state: 'waiting' }, waiting)
    }
  })
}

export interface QueueGaugeValues {
  /** Entries in the stream: queued and not yet written (acknowledged entries are deleted). */
  depth: number
  /** Entries handed to a consumer and not yet acknowledged. */
  pending: number
  /** Age of the oldest entry not yet written, 0 when the queue is empty. */
  oldestAgeSeconds: number
  deadLetters: number
}

/** Queue gauges read Redis at scrape time; a scrape while Redis is down keeps their last values rather than failing. */
export function registerQueueGauges(metrics: SageMetrics, read: () => Promise<QueueGaugeValues>): void {
  let last: Promise<QueueGaugeValues | undefined> | undefined
  // One Redis read per scrape, shared by the four gauges.
  const current = () => {
    last ??= read().catch(() => undefined).finally(() => setTimeout(() => (last = undefined), 100).unref())
    return last
  }
  const gauge = (name: string, help: string, pick: (values: QueueGaugeValues) => number) =>
    new Gauge({
      name,
      help,
      registers: [metrics.registry],
      async collect() {
        const values = await current()
        if (values) this.set(pick(values))
      }
    })
  gauge('sage_queue_depth', 'Queued saves not yet written to the store', (v) => v.depth)
  gauge('sage_queue_pending', 'Queued saves handed to a consumer and not yet acknowledged', (v) => v.pending)
  gauge('sage_queue_oldest_age_seconds', 'Age of the oldest queued save not yet written', (v) => v.oldestAgeSeconds)
  gauge('sage_queue_dead_letters', 'Entries in the dead-letter stream, waiting for an operator', (v) => v.deadLetters)
}

/** The hook's metrics, on the registry it is given; the retry buffer's size is read at scrape time. */
export function registerHookMetrics(registry: Registry) {
  return {
    requests: new Counter({
      name: 'sage_hook_requests_total',
      help: 'Hook calls by event and outcome (context, empty, saved, ignored, malformed, forbidden, opted_out, deadline, error)',
      labelNames: ['event', 'outcome'] as const,
      registers: [registry]
    }),
    deferred: new Counter({
      name: 'sage_hook_deferred_saves_total',
      help: 'Hook saves that failed and went to the in-process retry buffer (buffered), and what became of them (saved, dropped when full, rejected)',
      labelNames: ['outcome'] as const,
      registers: [registry]
    }),
    spooled: new Counter({
      name: 'sage_hook_spooled_saves_total',
      help: 'Hook saves in the retry buffer on disk: written to the spool as they entered the buffer (spooled), buffered again at the next start (replayed), or lost (dropped: the spool could not be written at shutdown, or a line of it read)',
      labelNames: ['event'] as const,
      registers: [registry]
    }),
    bufferGauge(size: () => number) {
      new Gauge({
        name: 'sage_hook_retry_buffer_size',
        help: 'Hook saves waiting in the in-process retry buffer',
        registers: [registry],
        collect() {
          this.set(size())
        }
      })
    }
  }
}
