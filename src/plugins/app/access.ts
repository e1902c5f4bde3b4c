import type { FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import { SageError } from '../../errors.js'
import { DEFAULT_NAMESPACE } from '../../memory/memory-service.js'
import { bearerToken, findKey, keysConfigured, loadApiKeys, scopesAllow, type ApiKey, type ApiKeySources, type LoadedKeys } from '../../security/api-keys.js'

/** What the caller of a request may do; `request.access` on every request. */
export interface Access {
  /** False when keys are configured and the request carries no valid one. */
  readonly authenticated: boolean
  /** The key's name; null when the service is open (no keys configured) or the caller is not authenticated. */
  readonly keyName: string | null
  /** The key's namespace patterns: ['*'] when open, [] when not authenticated. */
  readonly scopes: readonly string[]
  readonly canDelete: boolean
  /** Whether this caller may read and write `namespace`. Routes that find a namespace themselves (hooks) ask this. */
  allows(namespace: string): boolean
}

export interface ApiKeyReload {
  ok: boolean
  keys: number
  error?: string
}

export interface ApiKeyRing {
  /** Whether keys are required at all (SAGE_API_KEYS or SAGE_API_KEYS_FILE set). */
  readonly enabled: boolean
  /** Names of the keys in force, for logs and tests. */
  names(): string[]
  /**
   * Re-reads the key sources (by default the ones in force; a configuration reload passes its new ones, which are
   * in force from then on when they load). An invalid set is logged and the last good one stays in force.
   */
  reload(sources?: ApiKeySources): Promise<ApiKeyReload>
}

declare module 'fastify' {
  interface FastifyInstance {
    apiKeys: ApiKeyRing
  }
  interface FastifyRequest {
    access: Access
  }
  interface FastifyContextConfig {
    /** The handler checks the namespace of the memory it looks up (routes by id); the /v1 hook skips the namespace check. */
    namespaceCheckedByHandler?: boolean
  }
}

const OPEN: Access = { authenticated: true, keyName: null, scopes: ['*'], canDelete: true, allows: () => true }
const DENIED: Access = { authenticated: false, keyName: null, scopes: [], canDelete: false, allows: () => false }

function accessOf(key: ApiKey): Access {
  return { authenticated: true, keyName: key.name, scopes: key.scopes, canDelete: key.canDelete, allows: (namespace) => scopesAllow(key.scopes, namespace) }
}

export const unauthorized = (invalid: boolean) =>
  new SageError(
    401,
    'SAGE_UNAUTHORIZED',
    invalid ? 'the API key is not valid' : 'an API key is required: send Authorization: Bearer <key>',
    { 'www-authenticate': invalid ? 'Bearer realm="sage", error="invalid_token"' : 'Bearer realm="sage"' }
  )

/** The same answer whether or not the namespace exists: a 403 tells an outsider nothing. */
export const forbiddenNamespace = (namespace: string) =>
  new SageError(403, 'SAGE_FORBIDDEN', `namespace "${namespace}" is outside this key's scope`)

export const forbiddenDelete = () => new SageError(403, 'SAGE_FORBIDDEN', 'this key may not delete (its entry in SAGE_API_KEYS does not end in :delete)')

/** 401 unless the request carries a valid key (or the service is open); 429 once its address has failed too often. */
export async function requireKey(request: FastifyRequest): Promise<void> {
  if (request.access.authenticated) return
  const refusal = unauthorized(request.headers.authorization !== undefined)
  throw await request.server.refuseAuthentication(request, refusal)
}

/** 403 unless the caller may use every one of `namespaces`. */
export function requireNamespaces(request: FastifyRequest, namespaces: Iterable<string>): void {
  for (const namespace of namespaces) if (!request.access.allows(namespace)) throw forbiddenNamespace(namespace)
}

export function requireDelete(request: FastifyRequest): void {
  if (!request.access.canDelete) throw forbiddenDelete()
}

const isObject = (value: unknown): value is Record<string, unknown> => typeof value === 'object' && value !== null && !Array.isArray(value)
const namespaceOr = (value: unknown) => (typeof value === 'string' ? value : DEFAULT_NAMESPACE)

/**
 * Every namespace a validated /v1 request names: `namespace` of the body, of each `items[]` of a batch and of
 * the query string, each "default" when left out. A request that names none acts on "default".
 */
export function requestedNamespaces(body: unknown, query: unknown): Set<string> {
  const namespaces = new Set<string>()
  if (isObject(body)) {
    if (Array.isArray(body.items)) for (const item of body.items) namespaces.add(namespaceOr(isObject(item) ? item.namespace : undefined))
    else namespaces.add(namespaceOr(body.namespace))
  }
  if (isObject(query) && query.namespace !== undefined) namespaces.add(namespaceOr(query.namespace))
  if (namespaces.size === 0) namespaces.add(DEFAULT_NAMESPACE)
  return namespaces
}

/**
 * API keys from SAGE_API_KEYS and SAGE_API_KEYS_FILE (re-read by a configuration reload), and `request.access` for every
 * request. With no keys configured everything is allowed: src/server.ts refuses that on a non-loopback address.
 */
export default fp(
  async (fastify) => {
    const { config } = fastify
    let sources: ApiKeySources = { inline: config.SAGE_API_KEYS, file: config.SAGE_API_KEYS_FILE }
    let enabled = keysConfigured(sources)
    // A bad key set at start is fatal: the message names the entry, never a secret.
    const loaded: LoadedKeys = enabled ? await loadApiKeys(sources) : { keys: [] }
    let keys = loaded.keys
    if (loaded.warning) fastify.log.warn(loaded.warning)
    if (enabled) fastify.log.info({ keys: keys.map((k) => k.name) }, 'API keys loaded')

    const ring: ApiKeyRing = {
      get enabled() {
        return enabled
      },
      names: () => keys.map((k) => k.name),
      async reload(next = sources) {
        try {
          const reloaded: LoadedKeys = keysConfigured(next) ? await loadApiKeys(next) : { keys: [] }
          if (reloaded.warning) fastify.log.warn(reloaded.warning)
          keys = reloaded.keys
          sources = next
          enabled = keysConfigured(next)
          fastify.log.info({ keys: keys.map((k) => k.name) }, enabled ? 'API keys reloaded' : 'API keys removed; the service is open')
          return { ok: true, keys: keys.length }
        } catch (error) {
          const message = (error as Error).message
          fastify.log.error({ error: message, kept: keys.map((k) => k.name) }, 'API keys not reloaded; the previous keys stay in force')
          return { ok: false, keys: keys.length, error: message }
        }
      }
    }
    fastify.decorate('apiKeys', ring)

    // Fastify refuses object defaults on requests; the hook below sets it before any handler runs.
    fastify.decorateRequest('access', null as unknown as Access)
    fastify.addHook('onRequest', async (request) => {
      if (!enabled) {
        request.access = OPEN
        return
      }
      const token = bearerToken(request.headers.authorization)
      const key = token === undefined ? undefined : findKey(keys, token)
      request.access = key ? accessOf(key) : DENIED
    })
  },
  { name: 'access', dependencies: ['config'] }
)
