import { homedir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { MCP_AGENTS, mcpAgent } from '../mcp/mcp-agents.js'
import { installMcp, mcpSettingsPath, uninstallMcp } from '../mcp/mcp-install.js'
import { createSageConnection, DEFAULT_SAGE_URL, sageMcpUrl, SageUnreachableError } from '../mcp/sage-connection.js'
import { serveStdioProxy } from '../mcp/stdio-proxy.js'
import { PACKAGE_ROOT } from '../package-root.js'
import type { Command } from './command.js'

const AGENTS = MCP_AGENTS.map((agent) => agent.id).join(', ')
const USAGE = `[--namespace N]   MCP on stdin/stdout, forwarded to the Sage at $SAGE_URL (${DEFAULT_SAGE_URL}) with $SAGE_API_KEY
install <agent>... [--project|--user|--local] [--url URL] [--key-env NAME] [--namespace N] [--stdio] [--no-check]
uninstall <agent>... [--project|--user|--local]
  agents: ${AGENTS} (where each keeps its servers, and its scopes: docs/mcp.md)
  --url defaults to $SAGE_URL, else ${DEFAULT_SAGE_URL}; --key-env to SAGE_API_KEY when that is set here`

const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/
const CLI = join(PACKAGE_ROOT, 'dist', 'src', 'cli.js')

/** `sage-memory mcp`: the stdio server, and Sage's entry in agents' MCP settings, added or removed. */
export const mcp: Command = {
  summary: 'serve MCP over stdio, or add Sage to an agent\'s MCP servers (or remove it)',
  usage: USAGE,
  async run(args) {
    const { values, positionals } = parseArgs({
      args,
      allowPositionals: true,
      options: {
        project: { type: 'boolean', default: false },
        user: { type: 'boolean', default: false },
        local: { type: 'boolean', default: false },
        url: { type: 'string' },
        'key-env': { type: 'string' },
        namespace: { type: 'string' },
        stdio: { type: 'boolean', default: false },
        'no-check': { type: 'boolean', default: false },
        help: { type: 'boolean', short: 'h', default: false }
      }
    })
    const [action, ...agentIds] = positionals
    if (values.help) {
      console.log(`Usage: sage-memory mcp ${USAGE.replace(/\n(?! )/g, '\n       sage-memory mcp ')}`)
      return 0
    }
    const baseUrl = values.url ?? process.env.SAGE_URL ?? DEFAULT_SAGE_URL
    const url = sageMcpUrl(baseUrl, values.namespace)
    if (action === undefined) {
      serveStdioProxy(createSageConnection({ url, apiKey: process.env.SAGE_API_KEY || undefined }))
      return undefined
    }
    if (action !== 'install' && action !== 'uninstall') throw new Error(`unknown mcp action "${action}"; use install or uninstall (or nothing, to serve on stdio)`)
    if (agentIds.length === 0) throw new Error(`name the agents to ${action} Sage for: ${AGENTS}`)
    const agents = agentIds.map(mcpAgent)
    const scopes = (['project', 'user', 'local'] as const).filter((scope) => values[scope])
    if (scopes.length > 1) throw new Error('choose one of --project, --user and --local')
    const places = { cwd: process.cwd(), home: homedir(), env: process.env }

    let failed = false
    if (action === 'uninstall') {
      for (const agent of agents) {
        try {
          const result = await uninstallMcp(agent, scopes[0] ?? agent.defaultScope, places)
          if (!result.changed) console.log(`${agent.name}: no Sage MCP server in ${result.path}; nothing changed.`)
          else console.log(`${agent.name}: Sage's MCP server removed from ${result.path}${result.removedFile ? ' (it held nothing else, so the file is gone)' : ''}`)
          if (result.backupPath) console.log(`  backup of the previous file: ${result.backupPath}`)
        } catch (error) {
          failed = true
          console.error(`${agent.name}: ${(error as Error).message}`)
        }
      }
      return failed ? 1 : 0
    }

    const apiKeyEnv = values['key-env'] ?? (process.env.SAGE_API_KEY ? 'SAGE_API_KEY' : undefined)
    if (apiKeyEnv !== undefined && !ENV_NAME.test(apiKeyEnv)) throw new Error(`--key-env takes an environment variable name like SAGE_API_KEY, got "${apiKeyEnv}"`)
    const stdio = values.stdio ? { command: process.execPath, args: [CLI, 'mcp', ...(values.namespace === undefined ? [] : ['--namespace', values.namespace])], sageUrl: baseUrl } : undefined
    for (const agent of agents) {
      const scope = scopes[0] ?? agent.defaultScope
      try {
        const result = await installMcp(agent, scope, places, { url: url.toString(), apiKeyEnv, stdio })
        if (!result.changed) console.log(`${agent.name}: Sage's MCP server is already in ${result.path}; nothing changed.`)
        else console.log(`${agent.name}: Sage's MCP server written to ${result.path}`)
        if (result.backupPath) console.log(`  backup of the previous file: ${result.backupPath}`)
      } catch (error) {
        failed = true
        console.error(`${agent.name}: ${(error as Error).message}`)
        if (!agent.files[scope]) continue
        console.error(`  (${mcpSettingsPath(agent, scope, places)})`)
      }
    }
    const reaches = stdio ? `starts \`sage-memory mcp\`, which forwards to ${url}` : `connects to ${url}`
    console.log(`  ${reaches}${apiKeyEnv ? ` with the key in ${apiKeyEnv}` : ''}`)
    if (apiKeyEnv !== undefined && agents.some((agent) => agent.input)) console.log('  VS Code asks for the key once, when it first starts the server, and keeps it')
    if (apiKeyEnv !== undefined && !process.env[apiKeyEnv]) console.log(`  note: ${apiKeyEnv} is not set in this shell; the agent must see it in its environment`)
    if (!values['no-check']) await checkSage(url, apiKeyEnv === undefined ? undefined : process.env[apiKeyEnv])
    return failed ? 1 : 0
  }
}

/** Says whether Sage answers, as an MCP server, at the URL just written, and what to do when it does not. */
async function checkSage(url: URL, apiKey: string | undefined): Promise<void> {
  const sage = createSageConnection({ url, apiKey: apiKey || undefined, timeoutMs: 5_000 })
  try {
    const tools = await sage.listTools()
    console.log(`  Sage answers at ${url}: tools ${tools.map((tool) => tool.name).join(', ')}`)
  } catch (error) {
    if (!(error instanceof SageUnreachableError)) throw error
    console.log(`  warning: ${error.message}. The agent will not reach Sage until it does.`)
  } finally {
    await sage.close()
  }
}
