import { Worker, type WorkerOptions } from 'node:worker_threads'

/**
 * A worker thread running the module `name` beside the caller (`from`, its import.meta.url): compiled, the .js;
 * run from source through tsx, the .ts, which a thread loads only after registering tsx itself.
 */
export function moduleWorker(from: string, name: string, options: WorkerOptions): Worker {
  if (!from.endsWith('.ts')) return new Worker(new URL(`${name}.js`, from), options)
  const source = new URL(`${name}.ts`, from).href
  const bootstrap = `import(${JSON.stringify(import.meta.resolve('tsx/esm/api'))}).then(({ register }) => { register(); return import(${JSON.stringify(source)}) })`
  return new Worker(bootstrap, { ...options, eval: true })
}
