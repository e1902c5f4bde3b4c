import { localhostAllowedHostnames, localhostAllowedOrigins, validateHostHeader, validateOriginHeader } from '@modelcontextprotocol/server'
import type { FastifyInstance } from 'fastify'
import { SageError } from '../../src/errors.js'
import { ErrorBody } from '../../src/memory/memory-schemas.js'
import { requireKey } from '../../src/plugins/app/access.js'
import { LOOPBACK } from '../../src/security/check-exposure.js'

const names = (list: string | undefined) => (list ?? '').split(',').map((name) => name.trim().toLowerCase()).filter(Boolean)

const rebinding = (message: string, setting: string) =>
  new SageError(403, 'SAGE_FORBIDDEN', `${message}: /mcp refuses it against DNS rebinding (add the name to ${setting} if it is yours)`)

/**
 * Access to /mcp, here once like /v1's: the Host and Origin checks against DNS rebinding (a web page whose name
 * resolves to 127.0.0.1 must not reach a local Sage through the visitor's browser), then a valid key (401).
 * Namespace scopes are checked per tool call (src/mcp/mcp-server.ts), where a refusal is a tool error.
 */
export default async function mcpAccess(fastify: FastifyInstance) {
  const { config } = fastify
  const extraHosts = names(config.MCP_ALLOWED_HOSTS)
  // Bound to loopback, only local names are legitimate; bound elsewhere, the names the operator gives, if any.
  const hosts = LOOPBACK.test(config.HOST) ? [...localhostAllowedHostnames(), ...extraHosts] : extraHosts.length > 0 ? extraHosts : undefined
  // A request without Origin (every MCP client outside a browser) passes; a browser's must be a local page or a named one.
  const origins = [...localhostAllowedOrigins(), ...names(config.MCP_ALLOWED_ORIGINS)]

  fastify.addHook('onRoute', (route) => {
    const response = route.schema?.response as Record<string, unknown> | undefined
    route.schema = { ...route.schema, security: [{ bearer: [] }], ...(response && { response: { 401: ErrorBody, 403: ErrorBody, ...response } }) }
  })
  fastify.addHook('onRequest', async (request) => {
    if (hosts) {
      const host = validateHostHeader(request.headers.host, hosts)
      if (!host.ok) throw rebinding(host.message, 'MCP_ALLOWED_HOSTS')
    }
    const origin = validateOriginHeader(request.headers.origin, origins)
    if (!origin.ok) throw rebinding(origin.message, 'MCP_ALLOWED_ORIGINS')
    await requireKey(request)
  })
}
