import { monitorEventLoopDelay } from 'node:perf_hooks'
import type { Embedder } from '../src/embedder/embedder.js'

export interface EmbedderThroughput {
  embedder: string
  /** Texts embedded per second of wall time, over whole calls. */
  embeddingsPerSecond: number
  texts: number
  textsPerCall: number
  meanChars: number
  seconds: number
  /** The 99th percentile of this thread's event-loop delay meanwhile, in ms: what requests would have waited. */
  eventLoopP99Ms: number
}

/** Embeds `texts` in calls of `textsPerCall`, round after round, for about `seconds`; the first call warms up. */
export async function measureEmbedder(embedder: Embedder, texts: readonly string[], options: { seconds: number; textsPerCall: number }): Promise<EmbedderThroughput> {
  const call = (offset: number) => {
    const slice = texts.slice(offset % texts.length, (offset % texts.length) + options.textsPerCall)
    return embedder.embed(slice).then(() => slice.length)
  }
  await call(0)
  const delay = monitorEventLoopDelay({ resolution: 5 })
  delay.enable()
  const started = performance.now()
  let embedded = 0
  let chars = 0
  while (performance.now() - started < options.seconds * 1000) {
    const offset = embedded
    const count = await call(offset)
    for (let i = 0; i < count; i++) chars += texts[(offset % texts.length) + i]!.length
    embedded += count
  }
  const seconds = (performance.now() - started) / 1000
  delay.disable()
  return {
    embedder: embedder.id,
    embeddingsPerSecond: embedded / seconds,
    texts: embedded,
    textsPerCall: options.textsPerCall,
    meanChars: chars / Math.max(1, embedded),
    seconds,
    eventLoopP99Ms: delay.percentile(99) / 1e6
  }
}

export function describeThroughput(t: EmbedderThroughput): string {
  return `${t.embedder}: ${Math.round(t.embeddingsPerSecond).toLocaleString('en-US')} embeddings a second (${t.texts.toLocaleString('en-US')} texts of ` +
    `${Math.round(t.meanChars)} characters on average, ${t.textsPerCall} a call, over ${t.seconds.toFixed(1)} s; this thread's event-loop ` +
    `delay p99 ${t.eventLoopP99Ms.toFixed(1)} ms meanwhile)`
}
