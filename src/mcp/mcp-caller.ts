import type { AuthInfo } from '@modelcontextprotocol/server'
import type { FastifyBaseLogger } from 'fastify'
import { DEFAULT_NAMESPACE } from '../memory/memory-service.js'
import type { Access } from '../plugins/app/access.js'

/** Who calls a tool: the request's access, the namespace a call that names none acts on, and the request's log. */
export interface McpCaller {
  access: Access
  namespace: string
  log: FastifyBaseLogger
}

/**
 * A connection's namespace: `?namespace=` of the MCP URL, else the key's scope when it is one plain namespace
 * (a key for `billing` means billing; a pattern such as `team-a/*` names none), else "default".
 */
export function mcpCaller(access: Access, urlNamespace: string | undefined, log: FastifyBaseLogger): McpCaller {
  const [only, ...others] = access.scopes
  const keyNamespace = only !== undefined && others.length === 0 && !only.endsWith('*') ? only : undefined
  return { access, namespace: urlNamespace ?? keyNamespace ?? DEFAULT_NAMESPACE, log }
}

/** The caller as the SDK passes it through to the server factory: its `authInfo`, checked by Sage beforehand. */
export function callerAuthInfo(caller: McpCaller): AuthInfo {
  return { token: '', clientId: caller.access.keyName ?? 'open', scopes: [...caller.access.scopes], extra: { caller } }
}

export function callerOf(authInfo: AuthInfo | undefined): McpCaller {
  const caller = authInfo?.extra?.caller as McpCaller | undefined
  if (!caller) throw new Error('an MCP request reached the server factory without its caller')
  return caller
}
