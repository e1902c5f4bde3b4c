import { homedir } from 'node:os'
import { join } from 'node:path'
import { MCP_AGENTS, mcpAgent } from '../mcp/mcp-agents.js'
import { installMcp, mcpSettingsPath, uninstallMcp } from '../mcp/mcp-install.js'
import { createSageConnection, SageUnreachableError } from '../mcp/sage-connection.js'
import { serveStdioProxy } from '../mcp/stdio-proxy.js'
import { PACKAGE_ROOT } from '../package-root.js'
import { sageUrl, SageUrlError } from '../sage-url.js'
import type { Command } from './command.js'
import { DEFAULT_SAGE_URL, settingsBackups } from './hooks.js'
import { parseCommandArgs, UsageError } from './parse-command-args.js'

const AGENTS = MCP_AGENTS.map((agent) => agent.id).join(', ')
const USAGE = `[--namespace N]   MCP on stdin/stdout, forwarded to the Sage at $SAGE_URL (${DEFAULT_SAGE_URL}) with $SAGE_API_KEY
install <agent>... [--project|--user|--local] [--url URL] [--key-env NAME] [--namespace N] [--stdio] [--no-check]
uninstall <agent>... [--project|--user|--local]
  agents: ${AGENTS} (where each keeps its servers, and its scopes: docs/mcp.md)
  --url defaults to $SAGE_URL, else ${DEFAULT_SAGE_URL}; --key-env to SAGE_API_KEY when that is set here
  install checks that Sage answers at the URL (and takes the key) unless --no-check`

const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/
const CLI = join(PACKAGE_ROOT, 'dist', 'src', 'cli.js')

/** Sage's MCP endpoint under the base URL, with `?namespace=` when one is given; a bad one named by its flag. */
function sageMcpUrl(baseUrl: string, namespace?: string): URL {
  try {
    return sageUrl(baseUrl, '/mcp', namespace)
  } catch (error) {
    if (error instanceof SageUrlError) throw new Error(`${error.part === 'baseUrl' ? '--url (or SAGE_URL)' : '--namespace'} ${error.rule}`, { cause: error })
    throw error
  }
}

/** `sage-memory mcp`: the stdio server, and Sage's entry in agents' MCP settings, added or removed. */
export const mcp: Command = {
  summary: 'serve MCP over stdio, or add Sage to an agent\'s MCP servers (or remove it)',
  usage: USAGE,
  async run(args) {
    const { values, positionals } = parseCommandArgs(args, {
      project: { type: 'boolean', default: false },
      user: { type: 'boolean', default: false },
      local: { type: 'boolean', default: false },
      url: { type: 'string' },
      'key-env': { type: 'string' },
      namespace: { type: 'string' },
      stdio: { type: 'boolean', default: false },
      'no-check': { type: 'boolean', default: false }
    }, true)
    const [action, ...agentIds] = positionals
    const baseUrl = values.url ?? (process.env.SAGE_URL || DEFAULT_SAGE_URL)
    const url = sageMcpUrl(baseUrl, values.namespace)
    if (action === undefined) {
      serveStdioProxy(createSageConnection({ url, apiKey: process.env.SAGE_API_KEY || undefined }))
      return undefined
    }
    if (action !== 'install' && action !== 'uninstall') throw new UsageError(`unknown action "${action}"; use install or uninstall (or nothing, to serve on stdio)`)
    if (agentIds.length === 0) throw new UsageError(`name the agents to ${action} Sage for: ${AGENTS}`)
    const agents = agentIds.map(mcpAgent)
    const scopes = (['project', 'user', 'local'] as const).filter((scope) => values[scope])
    if (scopes.length > 1) throw new Error('choose one of --project, --user and --local')
    const places = { cwd: process.cwd(), home: homedir(), env: process.env }
    const backups = settingsBackups()
    // A scope an agent does not have is refused before anything is written for any of them.
    for (const agent of agents) mcpSettingsPath(agent, scopes[0] ?? agent.defaultScope, places)

    let failed = false
    if (action === 'uninstall') {
      for (const agent of agents) {
        try {
          const result = await uninstallMcp(agent, scopes[0] ?? agent.defaultScope, places, backups)
          if (!result.changed) console.log(`${agent.name}: no Sage MCP server in ${result.path}; nothing changed.`)
          else console.log(`${agent.name}: Sage's MCP server removed from ${result.path}${result.removedFile ? ' (mcp install created it and it held nothing else: deleted)' : ''}`)
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
    const notes = values['no-check'] ? [] : await checkSage(url, apiKeyEnv)
    for (const agent of agents) {
      try {
        const result = await installMcp(agent, scopes[0] ?? agent.defaultScope, places, { url: url.toString(), apiKeyEnv, stdio }, backups)
        if (!result.changed) console.log(`${agent.name}: Sage's MCP server is already in ${result.path}; nothing changed.`)
        else console.log(`${agent.name}: Sage's MCP server written to ${result.path}`)
        if (result.backupPath) console.log(`  backup of the previous file: ${result.backupPath}`)
      } catch (error) {
        failed = true
        console.error(`${agent.name}: ${(error as Error).message}`)
      }
    }
    const reaches = stdio ? `starts \`sage-memory mcp\`, which forwards to ${url}` : `connects to ${url}`
    console.log(`  ${reaches}${apiKeyEnv ? ` with the key in ${apiKeyEnv}` : ''}`)
    if (apiKeyEnv !== undefined && agents.some((agent) => agent.input)) console.log('  VS Code asks for the key once, when it first starts the server, and keeps it')
    for (const note of notes) console.log(`  note: ${note}`)
    return failed ? 1 : 0
  }
}

/**
 * Asks Sage for its tools at the very URL the entries will hold, with the key when this shell has it, and
 * refuses an install that would point nowhere (as hooks install does); answers notes worth printing.
 */
async function checkSage(url: URL, apiKeyEnv: string | undefined): Promise<string[]> {
  const key = apiKeyEnv === undefined ? undefined : process.env[apiKeyEnv] || undefined
  const sage = createSageConnection({ url, apiKey: key, timeoutMs: 5_000 })
  try {
    const tools = await sage.listTools()
    return [`Sage answers at ${url}: tools ${tools.map((tool) => tool.name).join(', ')}`]
  } catch (error) {
    if (!(error instanceof SageUnreachableError)) throw error
    if (error.status === 401) {
      if (apiKeyEnv !== undefined && key === undefined) return [`${apiKeyEnv} is not set in this shell, so the key was not checked; the agent must see it in its environment`]
      if (apiKeyEnv === undefined) throw new Error(`Sage at ${url} requires an API key: pass --key-env with the name of the environment variable that holds yours (e.g. --key-env SAGE_API_KEY)`, { cause: error })
      throw new Error(`Sage at ${url} does not accept the key in ${apiKeyEnv}; check its value, or the key's entry in SAGE_API_KEYS`, { cause: error })
    }
    throw new Error(`${error.message}; --no-check installs anyway`, { cause: error })
  } finally {
    await sage.close()
  }
}
