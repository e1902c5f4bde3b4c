import fp from 'fastify-plugin'

/**
 * One step of the warm-up, given the namespace it works in (the store's largest) and a question that
 * differs from pass to pass, so no pass is answered from the recall cache.
 */
export type WarmUpStep = (namespace: string, question: string) => Promise<unknown>

export interface WarmUp {
  /** Adds a step; routes add theirs (the hook's dry run) as they are registered. */
  add(name: string, step: WarmUpStep): void
  /** Runs the steps until a pass is no faster than the one before (none on an empty store); a failing step is logged, never fatal. */
  run(): Promise<void>
}

declare module 'fastify' {
  interface FastifyInstance {
    warmUp: WarmUp
  }
}

const QUESTIONS = [
  'what did we decide about the export?',
  'how are errors retried when the connection resets?',
  'which settings changed in the configuration last week?',
  'why did the tests fail on the build machine?',
  'where is the pagination of the ledger handled?'
]
/** A pass that is not at least this many times faster than the one before: the store is as warm as it gets. */
const SETTLED = 1.25

/**
 * What the first requests after a start would otherwise pay for: the term backlog folded, the statements of a save
 * and of a recall planned and their pages read, the embedder's first runs, the hook's code path. src/server.ts runs
 * it before it listens, so a service that answers (and says ready) answers its first hook as fast as its later ones.
 */
export default fp(
  async (fastify) => {
    const { memories } = fastify
    const steps: Array<[string, WarmUpStep]> = [
      ['term statistics', () => fastify.termStatisticsFolder.drainOnce()],
      ['save', (namespace, question) => memories.rehearseSave({ memory: { namespace, role: 'user', content: question } })],
      ['recall', (namespace, question) => memories.recall({ query: question, namespace, k: 8, mode: 'hybrid', format: 'context' })]
    ]
    fastify.decorate('warmUp', {
      add: (name, step) => void steps.push([name, step]),
      async run() {
        const started = performance.now()
        const largest = (await memories.namespaces().catch(() => [])).sort((a, b) => b.count - a.count)[0]
        // An empty store has nothing to recall, so no hook has context to miss its deadline with.
        if (largest === undefined) return
        const namespace = largest.namespace
        const passesMs: number[] = []
        for (const question of QUESTIONS) {
          const passStarted = performance.now()
          for (const [name, step] of steps) {
            await step(namespace, question).catch((error: unknown) => fastify.log.warn({ err: error, step: name }, 'a warm-up step failed; the first request pays for it instead'))
          }
          passesMs.push(Math.round(performance.now() - passStarted))
          if (passesMs.length >= 2 && passesMs.at(-1)! * SETTLED >= passesMs.at(-2)!) break
        }
        fastify.log.info({ namespace, took_ms: Math.round(performance.now() - started), passes_ms: passesMs }, 'warmed up')
      }
    } satisfies WarmUp)
  },
  { name: 'warm-up', dependencies: ['memory-service'] }
)
