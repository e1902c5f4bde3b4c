import { NAMESPACE_PATTERN, NAMESPACE_RULE } from './memory/memory-schemas.js'

/** A base URL or namespace an installer was given that no entry could reach Sage with; `part` says which. */
export class SageUrlError extends RangeError {
  constructor(readonly part: 'baseUrl' | 'namespace', readonly rule: string) {
    super(`${part} ${rule}`)
  }
}

/**
 * One of Sage's routes under the base URL an agent is given (a path prefix is kept, a query or fragment
 * dropped), with `?namespace=` when one is given: what hooks and MCP entries point at.
 */
export function sageUrl(baseUrl: string, route: string, namespace?: string): URL {
  let url: URL | undefined
  try {
    url = new URL(baseUrl)
  } catch {
    url = undefined
  }
  if (url === undefined || (url.protocol !== 'http:' && url.protocol !== 'https:')) {
    throw new SageUrlError('baseUrl', `must be an http(s) URL such as http://127.0.0.1:8765, got "${baseUrl}"`)
  }
  url.pathname = url.pathname.replace(/\/+$/, '') + route
  url.search = ''
  url.hash = ''
  if (namespace !== undefined) {
    if (!NAMESPACE_PATTERN.test(namespace)) throw new SageUrlError('namespace', `must be ${NAMESPACE_RULE}, got "${namespace}"`)
    url.search = `?namespace=${encodeURIComponent(namespace)}`
  }
  return url
}
