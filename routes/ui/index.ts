import fastifyStatic from '@fastify/static'
import type { FastifyInstance } from 'fastify'
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { SageError } from '../../src/errors.js'
import { PACKAGE_ROOT } from '../../src/package-root.js'

/** Where `npm run build` puts the page (ui/vite.config.ts); the package ships it. */
export const UI_DIR = join(PACKAGE_ROOT, 'dist', 'ui')

/**
 * The page's own files only, from this origin: no inline script or style, no frames, no other site. The page asks
 * for a key itself and keeps it in sessionStorage, so a key never appears in a URL.
 */
export const UI_CONTENT_SECURITY_POLICY = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'"
].join('; ')

/** GET /ui: the page to browse memories, searches and injections, served from the package's files. */
export default async function ui(fastify: FastifyInstance) {
  fastify.addHook('onSend', async (_request, reply) => {
    reply.header('content-security-policy', UI_CONTENT_SECURITY_POLICY)
    reply.header('x-content-type-options', 'nosniff')
    reply.header('referrer-policy', 'no-referrer')
    reply.header('cross-origin-opener-policy', 'same-origin')
  })
  if (!existsSync(join(UI_DIR, 'index.html'))) {
    fastify.get('/*', { schema: { hide: true } }, async () => {
      throw new SageError(503, 'SAGE_UI_NOT_BUILT', `the page is not built (${UI_DIR} is missing): run npm run build`)
    })
    return
  }
  await fastify.register(fastifyStatic, {
    root: UI_DIR,
    prefix: '/',
    index: false,
    // Built names carry their content's hash: they never change. index.html names them, so it is always asked anew.
    setHeaders(res, path) {
      res.header('cache-control', path.includes(`${join('ui', 'assets')}`) ? 'public, max-age=31536000, immutable' : 'no-cache')
    }
  })
  // /ui and /ui/ are one route (ignoreTrailingSlash).
  fastify.get('', { schema: { hide: true } }, (_request, reply) => reply.sendFile('index.html'))
}
