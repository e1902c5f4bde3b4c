import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from 'typebox'

const Check = Type.Object({
  status: Type.Enum(['ok', 'error']),
  latency_ms: Type.Optional(Type.Number()),
  error: Type.Optional(Type.String()),
  id: Type.Optional(Type.String())
})

const RedisCheck = Type.Object({
  ...Check.properties,
  persistence: Type.Optional(Type.Enum(['aof', 'rdb', 'aof+rdb', 'none', 'unknown'], {
    description: 'How Redis keeps acknowledged asynchronous saves across its own restart; none loses them'
  }))
})

const Readiness = Type.Object({
  status: Type.Enum(['ok', 'unavailable']),
  checks: Type.Object({
    database: Check,
    redis: Type.Union([RedisCheck, Type.Literal('disabled')]),
    embedder: Check
  })
})

/** How long a readiness probe waits for one dependency before calling it down. */
const CHECK_TIMEOUT_MS = 2000
/** A remote embedder is asked at most this often; probes in between reuse the last answer. */
const EMBEDDER_CHECK_TTL_MS = 10_000

async function timed(check: () => Promise<unknown>) {
  const started = performance.now()
  try {
    await Promise.race([
      check(),
      new Promise((_, reject) => setTimeout(() => reject(new Error(`no answer within ${CHECK_TIMEOUT_MS} ms`)), CHECK_TIMEOUT_MS).unref())
    ])
    return { status: 'ok' as const, latency_ms: Math.round((performance.now() - started) * 100) / 100 }
  } catch (error) {
    return { status: 'error' as const, latency_ms: Math.round((performance.now() - started) * 100) / 100, error: (error as Error).message }
  }
}

const health: FastifyPluginAsyncTypebox = async (fastify) => {
  let embedderCheck: { at: number; result: Awaited<ReturnType<typeof timed>> } | undefined

  fastify.get('', {
    schema: { tags: ['operations'], summary: 'Liveness: 200 while the process serves', response: { 200: Type.Object({ status: Type.Literal('ok') }) } }
  }, async () => ({ status: 'ok' as const }))

  fastify.get('/ready', {
    schema: {
      tags: ['operations'],
      summary: 'Readiness: 200 when the database and the embedder answer, else 503',
      response: { 200: Readiness, 503: Readiness }
    }
  }, async (_request, reply) => {
    const { redis: clients } = fastify
    const [database, redis] = await Promise.all([
      timed(() => fastify.db.query('SELECT 1')),
      clients
        ? timed(() => clients.commands.ping()).then(async (check) => (check.status === 'ok' ? { ...check, persistence: await clients.persistence() } : check))
        : ('disabled' as const)
    ])
    if (!embedderCheck || Date.now() - embedderCheck.at > EMBEDDER_CHECK_TTL_MS || embedderCheck.result.status === 'error') {
      embedderCheck = { at: Date.now(), result: await timed(() => fastify.embedder.embed(['readiness check'], AbortSignal.timeout(CHECK_TIMEOUT_MS))) }
    }
    const embedder = { ...embedderCheck.result, id: fastify.embedder.id }
    // A slow or absent embedder degrades recall to full text, and without Redis saves are synchronous:
    // both lose nothing, so only the database decides.
    const ready = database.status === 'ok'
    if (!ready) reply.code(503).header('retry-after', '5')
    return { status: ready ? 'ok' as const : 'unavailable' as const, checks: { database, redis, embedder } }
  })
}

export default health
