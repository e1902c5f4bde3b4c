import type { FastifyInstance } from 'fastify'
import { before } from 'node:test'
import type { AppOptions } from '../../src/app.js'
import type { Config } from '../../src/config.js'
import { useTestApp, type Backend, type TestStore } from '../helper.js'

/** Listens on a free loopback port and answers the base URL, for tests that must go through a real socket. */
export async function listen(app: FastifyInstance): Promise<string> {
  await app.listen({ host: '127.0.0.1', port: 0 })
  return `http://127.0.0.1:${(app.server.address() as { port: number }).port}`
}

/** useTestApp, listening: the app, its store and its base URL for one suite. */
export function useListeningApp(backend: Backend, overrides: Partial<Config> = {}, options: AppOptions = {}): { app: FastifyInstance; store: TestStore; url: string } {
  const suite = useTestApp(backend, overrides, options) as { app: FastifyInstance; store: TestStore; url: string }
  before(async () => {
    suite.url = await listen(suite.app)
  })
  return suite
}
