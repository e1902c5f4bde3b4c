import { setTimeout as sleep } from 'node:timers/promises'
import closeWithGrace from 'close-with-grace'
import type { FastifyInstance } from 'fastify'
import { buildApp } from './app.js'
import type { Config } from './config.js'
import { createMetricsServer } from './metrics/metrics-server.js'
import { checkExposure } from './security/check-exposure.js'

export { LOOPBACK } from './security/check-exposure.js'

/** How long an embedded store's statement under way may still take once the grace is over. */
const EMBEDDED_CLOSE_WAIT_MS = 30_000

/**
 * The process: builds the app, listens, and on SIGTERM/SIGINT stops accepting, finishes in-flight
 * requests within SHUTDOWN_GRACE_MS, then closes the pools; on SIGHUP reloads the configuration.
 * Refuses a non-loopback address without keys.
 */
export async function startServer(config: Config): Promise<FastifyInstance> {
  const openWarning = checkExposure(config)
  const app = await buildApp(config)
  if (openWarning) app.log.warn(openWarning)
  const metricsServer = config.METRICS_PORT === undefined ? undefined : createMetricsServer(app.metrics.registry, { token: config.METRICS_TOKEN })
  if (metricsServer) app.addHook('onClose', () => metricsServer.close())
  // SIGHUP means "read the configuration again" (src/plugins/app/config-reload.ts), never "shut down".
  const onHangup = () => void app.reloadConfig()
  process.on('SIGHUP', onHangup)
  app.addHook('onClose', async () => {
    process.off('SIGHUP', onHangup)
  })
  try {
    // The store is prepared as the app gets ready; a failure there that is not the database being down ends the
    // start, before close-with-grace is wired (it would turn the exit into a clean one).
    await app.ready()
  } catch (error) {
    await app.close().catch(() => undefined)
    throw error
  }
  // The grace is Sage's own, not close-with-grace's: past it, the embedded store is closed between two statements
  // before the process exits, never in the middle of one (a write cut short can leave its files unopenable).
  closeWithGrace({ skip: ['SIGHUP'] }, async ({ signal, err }) => {
    if (err) app.log.error({ err }, 'shutting down after an unexpected error')
    else app.log.info({ signal }, 'shutting down')
    const closed = app.close().then(() => true)
    if (await Promise.race([closed, sleep(config.SHUTDOWN_GRACE_MS, false, { ref: false })])) return
    app.log.error({ grace_ms: config.SHUTDOWN_GRACE_MS }, 'requests still running after SHUTDOWN_GRACE_MS; ending them')
    if (app.db.kind === 'pglite') {
      const stored = app.db.close().catch((error: unknown) => app.log.error({ err: error }, 'the embedded store did not close cleanly'))
      await Promise.race([stored, sleep(EMBEDDED_CLOSE_WAIT_MS, undefined, { ref: false })])
    }
    process.exit(1)
  })
  // Warm before listening: once it answers, its first hook is as fast as the later ones.
  await app.ready()
  await app.warmUp.run()
  await app.listen({ host: config.HOST, port: config.PORT })
  if (metricsServer) {
    try {
      await metricsServer.listen({ host: config.HOST, port: config.METRICS_PORT })
    } catch (error) {
      // Without this the main listener would keep the process alive after the failed start.
      await app.close()
      throw new Error(`METRICS_PORT ${config.METRICS_PORT}: ${(error as Error).message}`, { cause: error })
    }
  }
  app.log.info({ store: app.db.kind, embedder: app.embedder.id, address: app.server.address() }, 'Sage is serving: ready')
  return app
}
