import { availableParallelism } from 'node:os'
import { setImmediate as nextTurn } from 'node:timers/promises'
import { Piscina } from 'piscina'
import { analyzeContent, type AnalyzedContent, type ContentTask } from './content-analysis.js'

/**
 * Texts from this long are analysed in a worker thread: below it the round trip costs more than the work
 * (BENCHMARKS.md, "Large bodies and the event loop").
 */
export const WORKER_THRESHOLD_CHARS = 10_000
/** Short texts analysed one after another on the event loop give it a turn after this long. */
const INLINE_SLICE_MS = 10
/** An idle worker thread ends after this long; the next long text starts one again. */
const IDLE_TIMEOUT_MS = 30_000
/** The threads run at a lower priority than the event loop: on a busy machine, requests get the CPU first. */
const NICE_INCREMENT = 10

export interface ContentAnalyzer {
  /** One result per task, in order. `keepTerms` is honoured for texts analysed on the event loop only. */
  analyzeAll(tasks: readonly ContentTask[]): Promise<AnalyzedContent[]>
  close(): Promise<void>
}

/** Compiled, the worker is the .js beside this file; from source (tests, through tsx) the .ts, which the threads load under tsx too. */
const WORKER_URL = new URL(import.meta.url.endsWith('.ts') ? './content-analysis-worker.ts' : './content-analysis-worker.js', import.meta.url).href

/**
 * Tokenizing, redacting and embedding grow with the text, and a 10 MB batch done on the event loop would hold every
 * other request until it ended. Long texts go to a pool of worker threads (piscina), started at the first one,
 * leaving a core for the event loop and yielding it the CPU; short ones are done in place, in slices that let the
 * event loop turn in between.
 */
export function createContentAnalyzer(options: { thresholdChars?: number; maxThreads?: number } = {}): ContentAnalyzer {
  const threshold = options.thresholdChars ?? WORKER_THRESHOLD_CHARS
  let pool: Piscina | undefined

  return {
    async analyzeAll(tasks) {
      const results = new Array<AnalyzedContent>(tasks.length)
      const pooled: Array<Promise<void>> = []
      // Held, not left rejected: the loop below may yield before anything awaits the pooled promises.
      let failure: { error: unknown } | undefined
      let sliceStarted = performance.now()
      for (const [index, task] of tasks.entries()) {
        if (task.text.length >= threshold) {
          pool ??= new Piscina({ filename: WORKER_URL, maxThreads: options.maxThreads ?? Math.max(1, availableParallelism() - 1), idleTimeout: IDLE_TIMEOUT_MS, niceIncrement: NICE_INCREMENT })
          pooled.push(pool.run({ ...task, keepTerms: false } satisfies ContentTask).then(
            (result: AnalyzedContent) => void (results[index] = result),
            (error: unknown) => void (failure ??= { error })
          ))
          continue
        }
        results[index] = analyzeContent(task)
        if (performance.now() - sliceStarted > INLINE_SLICE_MS) {
          await nextTurn()
          sliceStarted = performance.now()
        }
      }
      await Promise.all(pooled)
      if (failure) throw failure.error
      return results
    },
    async close() {
      await pool?.destroy()
      pool = undefined
    }
  }
}
