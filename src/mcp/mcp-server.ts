import { ProtocolError, ProtocolErrorCode, Server, type CallToolResult } from '@modelcontextprotocol/server'
import { classifyFailure } from '../classify-failure.js'
import type { DependencyOutages } from '../dependency-outages.js'
import { validationError } from '../errors.js'
import { describeValidation, toErrorReply } from '../http-errors.js'
import type { MemoryService } from '../memory/memory-service.js'
import type { SageMetrics } from '../metrics/sage-metrics.js'
import { PACKAGE_VERSION } from '../package-root.js'
import { forbiddenNamespace } from '../plugins/app/access.js'
import { validatorCompiler } from '../validation.js'
import type { McpCaller } from './mcp-caller.js'
import { MCP_INSTRUCTIONS, MCP_TOOLS, mcpToolList } from './mcp-tools.js'

export const MCP_SERVER_INFO = { name: 'sage', title: 'Sage memory', version: PACKAGE_VERSION }

export type McpToolOutcome = 'ok' | 'invalid' | 'forbidden' | 'not_found' | 'unavailable' | 'error'

const outcomeOf = (status: number): McpToolOutcome =>
  status === 403 ? 'forbidden' : status === 404 ? 'not_found' : status === 503 ? 'unavailable' : status >= 500 ? 'error' : 'invalid'

/** The protocol's answer to a tool that does not exist (not a tool error: there is no tool to have failed). */
export const unknownTool = (name: string) =>
  new ProtocolError(ProtocolErrorCode.InvalidParams, `unknown tool "${name}"; Sage's tools are ${MCP_TOOLS.map((tool) => tool.name).join(', ')}`)

/** A tool error: a result the agent reads and can act on, not a protocol failure. */
export const toolError = (text: string): CallToolResult => ({ content: [{ type: 'text', text }], isError: true })

/**
 * Sage's MCP server, one instance per request (the HTTP endpoint is stateless). It is the SDK's low-level
 * `Server`, not `McpServer`: the tools' schemas are already JSON Schema (TypeBox), and validating them with the
 * REST routes' own validator gives the same messages as the REST API and lets every call, valid or not, be
 * counted and timed in one place.
 */
export function createMcpServerFactory(deps: { memories: MemoryService; metrics: SageMetrics; outages?: DependencyOutages }) {
  const { memories, metrics } = deps
  const tools = new Map(
    MCP_TOOLS.map((tool) => [tool.name, { tool, validate: validatorCompiler({ schema: tool.inputSchema, httpPart: 'body', method: 'POST', url: '/mcp' }) }])
  )
  const listed = mcpToolList()

  async function call(name: string, args: Record<string, unknown>, caller: McpCaller): Promise<CallToolResult> {
    const entry = tools.get(name)
    if (!entry) throw unknownTool(name)
    const started = performance.now()
    let outcome: McpToolOutcome = 'ok'
    try {
      // The arguments are this request's own: filling in defaults in place changes nothing of anyone else's.
      if (entry.validate(args) !== true) throw validationError(describeValidation(entry.validate.errors ?? [], 'arguments'))
      const namespace = typeof args.namespace === 'string' ? args.namespace : caller.namespace
      if (entry.tool.usesNamespace && !caller.access.allows(namespace)) throw forbiddenNamespace(namespace)
      const answer = await entry.tool.run(args as never, { memories, caller, namespace })
      return { content: [{ type: 'text', text: answer.text }], structuredContent: answer.structured }
    } catch (error) {
      const reply = toErrorReply(error)
      outcome = outcomeOf(reply.statusCode)
      const failure = classifyFailure(error)
      // A dependency's trouble is counted in its outage, which logs it once, as the REST routes' 503s are.
      if (failure.kind === 'dependency') {
        deps.outages?.refused(failure.dependency, failure.reason)
        caller.log.debug({ tool: name, dependency: failure.dependency, message: reply.message }, 'MCP tool call refused: a dependency is down or busy')
      } else if (outcome === 'error') caller.log.error({ err: error, tool: name }, 'MCP tool call failed')
      else caller.log.warn({ tool: name, code: reply.code, message: reply.message }, 'MCP tool call refused')
      const retryAfter = reply.headers['retry-after']
      return toolError(retryAfter ? `${reply.message} (retry in ${retryAfter} s)` : reply.message)
    } finally {
      metrics.mcpToolCalls.observe({ tool: name, outcome }, (performance.now() - started) / 1000)
    }
  }

  return (caller: McpCaller): Server => {
    const server = new Server(MCP_SERVER_INFO, { capabilities: { tools: {} }, instructions: MCP_INSTRUCTIONS })
    server.setRequestHandler('tools/list', () => ({ tools: listed }))
    server.setRequestHandler('tools/call', async (request) => {
      const tool = listed.find((listedTool) => listedTool.name === request.params.name)
      const result = await call(request.params.name, request.params.arguments ?? {}, caller)
      return server.projectCallToolResult(result, tool?.outputSchema)
    })
    return server
  }
}
