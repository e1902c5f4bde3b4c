// Embeddings per second of LocalEmbedder, with the event loop's delay meanwhile:
//   node --import tsx bench/local-embedder.bench.ts                 the tests' own tiny model (written to a temp folder)
//   EMBEDDING_MODEL=/path/to/model node --import tsx bench/local-embedder.bench.ts   a real model, from a folder or the cache
import { mkdtemp, rm } from 'node:fs/promises'
import { cpus, tmpdir } from 'node:os'
import { join } from 'node:path'
import { loadConfig, modelCacheDir } from '../src/config.js'
import { LocalEmbedder } from '../src/embedder/local-embedder.js'
import { writeTestModel } from '../test/support/test-model.js'
import { describeThroughput, measureEmbedder } from './embedder-throughput.js'
import { createWorkload } from './workload.js'

const SECONDS = 5
const TEXTS_PER_CALL = 256
const RUN_SIZES = [8, 64]
const THREADS = [1, 2]

const config = loadConfig()
const scratch = await mkdtemp(join(tmpdir(), 'sage-local-bench-'))
try {
  const model = config.EMBEDDING_MODEL ?? (await writeTestModel(join(scratch, 'model'))).dir
  const label = config.EMBEDDING_MODEL ? model : `the tests' own model (${model}: one Gather over a 24-dimension table, so the time is tokenising and pooling)`
  console.log(`${label}, ${config.EMBEDDING_LOCAL_DTYPE} weights, node ${process.version}, ${cpus().length} cores (${cpus()[0]?.model.trim()}), ${SECONDS} s a setting`)
  const workload = createWorkload(7)
  const texts = Array.from({ length: 2_000 }, () => workload.text())
  for (const threads of THREADS) {
    for (const batchSize of RUN_SIZES) {
      const started = performance.now()
      const embedder = await LocalEmbedder.load({
        model,
        cacheDir: modelCacheDir(config),
        hubUrl: config.EMBEDDING_LOCAL_HUB_URL,
        allowDownload: false,
        dtype: config.EMBEDDING_LOCAL_DTYPE,
        pooling: config.EMBEDDING_LOCAL_POOLING,
        threads,
        batchSize
      })
      const loadMs = performance.now() - started
      try {
        const result = await measureEmbedder(embedder, texts, { seconds: SECONDS, textsPerCall: TEXTS_PER_CALL })
        console.log(`threads ${threads}, ${batchSize} texts a model run, loaded in ${Math.round(loadMs)} ms: ${describeThroughput(result)}`)
      } finally {
        await embedder.close()
      }
    }
  }
} finally {
  await rm(scratch, { recursive: true, force: true })
}
