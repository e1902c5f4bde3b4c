import { Server } from '@modelcontextprotocol/server'
import { serveStdio } from '@modelcontextprotocol/server/stdio'
import { MCP_SERVER_INFO, toolError, unknownTool } from './mcp-server.js'
import { MCP_INSTRUCTIONS, mcpToolList } from './mcp-tools.js'
import { SageUnreachableError, type SageConnection } from './sage-connection.js'

/**
 * `sage-memory mcp`: an MCP server on stdin/stdout for agents that start their servers as processes. It owns
 * nothing: every tool call is forwarded to a running Sage's /mcp, which validates, checks the key and does the
 * work, so one service stays the owner of the store. The tool list is answered from this package's own catalog,
 * so an agent that starts before Sage still learns its tools, and each call then says what is wrong.
 */
export function serveStdioProxy(sage: SageConnection) {
  const tools = mcpToolList()
  return serveStdio(() => {
    const server = new Server(MCP_SERVER_INFO, { capabilities: { tools: {} }, instructions: MCP_INSTRUCTIONS })
    server.setRequestHandler('tools/list', () => ({ tools }))
    server.setRequestHandler('tools/call', async (request) => {
      const { name, arguments: args = {} } = request.params
      const tool = tools.find((listed) => listed.name === name)
      if (!tool) throw unknownTool(name)
      try {
        return server.projectCallToolResult(await sage.callTool(name, args), tool.outputSchema)
      } catch (error) {
        if (error instanceof SageUnreachableError) return toolError(error.message)
        throw error
      }
    })
    return server
  })
}
