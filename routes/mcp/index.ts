import { createMcpHandler } from '@modelcontextprotocol/server'
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import type { FastifyRequest } from 'fastify'
import { Type } from 'typebox'
import { callerAuthInfo, callerOf, mcpCaller } from '../../src/mcp/mcp-caller.js'
import { createMcpServerFactory } from '../../src/mcp/mcp-server.js'
import { ErrorBody, Namespace } from '../../src/memory/memory-schemas.js'

const McpQuery = Type.Object(
  { namespace: Type.Optional(Type.With(Namespace, { description: 'The namespace of tool calls that name none (default: the key\'s own namespace, else "default")' })) },
  { additionalProperties: false }
)

/** The request as the SDK's handler reads it: method, URL and headers (the body goes along already parsed). */
function webRequest(request: FastifyRequest): Request {
  const headers = new Headers()
  for (const [name, value] of Object.entries(request.headers)) {
    if (value === undefined || name === 'content-length' || name === 'transfer-encoding') continue
    for (const item of Array.isArray(value) ? value : [value]) {
      try {
        headers.append(name, item)
      } catch {
        // A value the Fetch API refuses (Node accepts more): no header the protocol reads can be like that.
      }
    }
  }
  return new Request(new URL(request.url, 'http://localhost'), { method: request.method, headers })
}

/**
 * /mcp: the Model Context Protocol over Streamable HTTP, stateless (every request is served by a fresh server
 * instance, so any replica answers any request), for the 2026-07-28 revision and the 2025 ones before it.
 */
const mcp: FastifyPluginAsyncTypebox = async (fastify) => {
  const serverFor = createMcpServerFactory({ memories: fastify.memories, metrics: fastify.metrics, outages: fastify.outages })
  const handler = createMcpHandler(({ authInfo }) => serverFor(callerOf(authInfo)), {
    onerror: (error) => fastify.log.debug({ err: error }, 'MCP request refused')
  })
  fastify.addHook('onClose', () => handler.close())

  fastify.route({
    method: ['GET', 'POST', 'DELETE'],
    url: '',
    schema: {
      tags: ['mcp'],
      summary: 'Model Context Protocol endpoint (Streamable HTTP)',
      description:
        'JSON-RPC messages of the Model Context Protocol, stateless: tools remember, recall, get_memory, forget, list_sessions and recent. ' +
        'Protocol revisions 2026-07-28 and 2025-11-25 (and the 2025 ones before it). Set up and tools: docs/mcp.md.',
      querystring: McpQuery,
      response: {
        200: Type.Unknown({ description: 'The JSON-RPC response, as application/json or a text/event-stream of it' }),
        202: Type.Unknown({ description: 'A notification, accepted' }),
        400: ErrorBody, 413: ErrorBody, 415: ErrorBody
      }
    },
    handler: async (request, reply) => {
      const caller = mcpCaller(request.access, request.query.namespace, request.log)
      const response = await handler.fetch(webRequest(request), { parsedBody: request.body, authInfo: callerAuthInfo(caller) })
      return reply.send(response)
    }
  })
}

export default mcp
