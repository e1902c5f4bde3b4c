/**
 * Where the content analyzer's threshold comes from: for texts of growing length, the time analysing one takes on
 * the event loop, against the round trip of the same task through the worker pool (including the event loop's
 * own share of that round trip: sending the text and reading the answer).
 *
 *   npx tsx bench/content-analysis.bench.ts
 */
import { randomBytes } from 'node:crypto'
import { analyzeContent } from '../src/memory/content-analysis.js'
import { createContentAnalyzer } from '../src/memory/content-analyzer.js'

const ROUNDS = 200
const prose = 'Switch the ledger export to cursor pagination; ERR_CONN_RESET came from src/export/ledger.ts when retries ran out. '
const kinds = {
  prose: (chars: number) => prose.repeat(Math.ceil(chars / prose.length)).slice(0, chars),
  base64: (chars: number) => randomBytes(chars).toString('base64').slice(0, chars)
}

const pooled = createContentAnalyzer({ thresholdChars: 0, maxThreads: 1 })
const median = (values: number[]) => values.sort((a, b) => a - b)[Math.floor(values.length / 2)]!
for (const [kind, make] of Object.entries(kinds)) {
  for (const chars of [1_000, 2_500, 5_000, 10_000, 20_000, 100_000]) {
    const task = { text: make(chars), normalize: true, redact: true, lexicalDimension: 384 }
    const inline: number[] = []
    const roundTrip: number[] = []
    for (let i = 0; i < ROUNDS; i++) {
      let started = performance.now()
      analyzeContent(task)
      inline.push(performance.now() - started)
      started = performance.now()
      await pooled.analyzeAll([task])
      roundTrip.push(performance.now() - started)
    }
    console.log(`${kind} ${chars} chars: on the event loop ${median(inline).toFixed(3)} ms, through a worker ${median(roundTrip).toFixed(3)} ms (median of ${ROUNDS})`)
  }
}
await pooled.close()
