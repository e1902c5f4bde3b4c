import fp from 'fastify-plugin'
import { isDeepStrictEqual } from 'node:util'
import { ConfigSchema, LIVE_SETTINGS, loadConfig, type Config } from '../../config.js'
import { checkExposure } from '../../security/check-exposure.js'

export interface ConfigReload {
  ok: boolean
  /** Live settings whose new values are in force. */
  applied: string[]
  /** Variables that changed but are read only at start: in force after the next restart. */
  restartNeeded: string[]
  error?: string
}

declare module 'fastify' {
  interface FastifyInstance {
    /**
     * Reads the configuration again (the environment over SAGE_ENV_FILE, and the key file) and applies what can
     * change live: LIVE_SETTINGS in src/config.ts. src/server.ts calls it on SIGHUP. Reloads run one at a time.
     */
    reloadConfig(): Promise<ConfigReload>
  }
}

const KEY_SETTINGS = new Set<string>(['SAGE_API_KEYS', 'SAGE_API_KEYS_FILE'])
const VARIABLES = Object.keys(ConfigSchema.properties) as Array<keyof Config>

/**
 * Live configuration. `fastify.config` stays the one configuration object: a reload writes the new values of the
 * live settings into it, and the code that honours them reads them at each use (the rate limiter per request, the
 * hook per call), while the logger's level and the key ring are told directly.
 */
export default fp<{ read?: () => Config }>(
  async (fastify, options) => {
    const { config, log } = fastify
    const read = options.read ?? (() => loadConfig())

    async function reload(): Promise<ConfigReload> {
      let next: Config
      try {
        next = read()
        // The address is not live: the keys must still protect the one the service listens on.
        checkExposure({ ...next, HOST: config.HOST, SAGE_ALLOW_OPEN: config.SAGE_ALLOW_OPEN })
      } catch (error) {
        const message = (error as Error).message
        log.error({ error: message }, 'configuration not reloaded; everything stays as it was')
        return { ok: false, applied: [], restartNeeded: [], error: message }
      }
      const changed = VARIABLES.filter((name) => !isDeepStrictEqual(config[name], next[name]))
      const live = new Set<string>(LIVE_SETTINGS)
      const restartNeeded = changed.filter((name) => !live.has(name))
      const applied: string[] = []

      // The key file is read again even when its path is unchanged: rotating keys means editing it.
      const keys = await fastify.apiKeys.reload({ inline: next.SAGE_API_KEYS, file: next.SAGE_API_KEYS_FILE })
      for (const name of changed) {
        if (!live.has(name) || (KEY_SETTINGS.has(name) && !keys.ok)) continue
        Object.assign(config, { [name]: next[name] })
        applied.push(name)
      }
      if (applied.includes('LOG_LEVEL')) log.level = config.LOG_LEVEL

      log.info({ applied, keys: keys.ok ? fastify.apiKeys.names() : undefined }, 'configuration reloaded')
      if (restartNeeded.length > 0) log.warn({ variables: restartNeeded }, 'changed variables that take effect at the next start')
      return { ok: keys.ok, applied, restartNeeded, ...(keys.ok ? {} : { error: keys.error }) }
    }

    let last: Promise<unknown> = Promise.resolve()
    fastify.decorate('reloadConfig', () => {
      const next = last.then(reload)
      last = next.catch(() => undefined)
      return next
    })
  },
  { name: 'config-reload', dependencies: ['config', 'access'] }
)
