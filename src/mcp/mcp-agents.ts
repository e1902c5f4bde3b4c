import { join } from 'node:path'

/**
 * The agents `sage-memory mcp install` knows, each with where it keeps its MCP servers and how it writes one,
 * as its own documentation describes (docs/mcp.md links each). Sage's entry is always named "sage"; a key is
 * never written, only a reference the agent resolves when it starts (an environment variable, or VS Code's
 * prompt for a secret it then stores).
 */

export type McpScope = 'project' | 'user' | 'local'

export interface McpEntryOptions {
  /** Sage's MCP endpoint, e.g. http://127.0.0.1:8765/mcp (with ?namespace= when one is given). */
  url: string
  /** Name of the environment variable that holds the API key; undefined for an open Sage. */
  apiKeyEnv?: string
  /** Start `sage-memory mcp` instead of connecting over HTTP: the command, its arguments and Sage's base URL. */
  stdio?: { command: string; args: string[]; sageUrl: string }
}

export interface McpAgent {
  id: string
  name: string
  format: 'json' | 'toml'
  defaultScope: McpScope
  /** The settings file of each scope the agent has. */
  files: Partial<Record<McpScope, (where: AgentPlaces) => string>>
  /** Where Sage's entry sits inside the file. */
  entryPath(scope: McpScope, where: AgentPlaces): string[]
  entry(options: McpEntryOptions): Record<string, unknown>
  /** VS Code's `inputs`: the prompt for the key that its entry refers to. */
  input?: { id: string; entry: Record<string, unknown> }
}

export interface AgentPlaces {
  cwd: string
  home: string
  env: Record<string, string | undefined>
}

export const SAGE_SERVER_NAME = 'sage'

/**
 * An entry of the JSON shape most agents share: the URL under the agent's own name for it with a bearer header,
 * or the command that starts `sage-memory mcp` with SAGE_URL and the key; `type` for the agents that want one.
 * `keyReference` writes the agent's way of naming an environment variable (or VS Code's input).
 */
function jsonEntry(urlKey: string, keyReference: (name: string) => string, typed: boolean) {
  return (options: McpEntryOptions): Record<string, unknown> => {
    const key = options.apiKeyEnv === undefined ? undefined : keyReference(options.apiKeyEnv)
    if (options.stdio) {
      const env = { SAGE_URL: options.stdio.sageUrl, ...(key === undefined ? {} : { SAGE_API_KEY: key }) }
      return { ...(typed && { type: 'stdio' }), command: options.stdio.command, args: options.stdio.args, env }
    }
    return { ...(typed && { type: 'http' }), [urlKey]: options.url, ...(key !== undefined && { headers: { Authorization: `Bearer ${key}` } }) }
  }
}

// Claude Code and Gemini CLI expand ${VAR}; Cursor and Windsurf ${env:VAR}.
const shellStyle = (name: string) => `\${${name}}`
const envStyle = (name: string) => `\${env:${name}}`

const claudeCode: McpAgent = {
  id: 'claude-code',
  name: 'Claude Code',
  format: 'json',
  defaultScope: 'project',
  files: {
    project: ({ cwd }) => join(cwd, '.mcp.json'),
    // User and local servers share ~/.claude.json (CLAUDE_CONFIG_DIR moves it): local ones under the project's path.
    user: ({ home, env }) => join(env.CLAUDE_CONFIG_DIR ?? home, '.claude.json'),
    local: ({ home, env }) => join(env.CLAUDE_CONFIG_DIR ?? home, '.claude.json')
  },
  entryPath: (scope, { cwd }) => (scope === 'local' ? ['projects', cwd, 'mcpServers', SAGE_SERVER_NAME] : ['mcpServers', SAGE_SERVER_NAME]),
  entry: jsonEntry('url', shellStyle, true)
}

const cursor: McpAgent = {
  id: 'cursor',
  name: 'Cursor',
  format: 'json',
  defaultScope: 'project',
  files: { project: ({ cwd }) => join(cwd, '.cursor', 'mcp.json'), user: ({ home }) => join(home, '.cursor', 'mcp.json') },
  entryPath: () => ['mcpServers', SAGE_SERVER_NAME],
  entry: jsonEntry('url', envStyle, false)
}

const codex: McpAgent = {
  id: 'codex',
  name: 'Codex CLI',
  format: 'toml',
  defaultScope: 'user',
  // A project's .codex/config.toml is read only once Codex trusts the project.
  files: { user: ({ home, env }) => join(env.CODEX_HOME ?? join(home, '.codex'), 'config.toml'), project: ({ cwd }) => join(cwd, '.codex', 'config.toml') },
  entryPath: () => ['mcp_servers', SAGE_SERVER_NAME],
  entry(options) {
    if (!options.stdio) return { url: options.url, ...(options.apiKeyEnv === undefined ? {} : { bearer_token_env_var: options.apiKeyEnv }) }
    // Codex hands a stdio server only the variables its `env` table spells out, so a key could only be written in clear.
    if (options.apiKeyEnv !== undefined) throw new Error('Codex CLI cannot pass a key to a stdio server by reference; leave out --stdio (Codex reads the key from the variable itself)')
    return { command: options.stdio.command, args: options.stdio.args, env: { SAGE_URL: options.stdio.sageUrl } }
  }
}

const VSCODE_KEY_INPUT = 'sage-api-key'
const vscode: McpAgent = {
  id: 'vscode',
  name: 'VS Code',
  format: 'json',
  defaultScope: 'project',
  files: { project: ({ cwd }) => join(cwd, '.vscode', 'mcp.json') },
  entryPath: () => ['servers', SAGE_SERVER_NAME],
  // VS Code asks for the key once, by this input, and keeps it in its secret storage.
  entry: jsonEntry('url', () => `\${input:${VSCODE_KEY_INPUT}}`, true),
  input: { id: VSCODE_KEY_INPUT, entry: { type: 'promptString', id: VSCODE_KEY_INPUT, description: 'Sage API key', password: true } }
}

const windsurf: McpAgent = {
  id: 'windsurf',
  name: 'Windsurf',
  format: 'json',
  defaultScope: 'user',
  files: { user: ({ home }) => join(home, '.codeium', 'windsurf', 'mcp_config.json') },
  entryPath: () => ['mcpServers', SAGE_SERVER_NAME],
  entry: jsonEntry('serverUrl', envStyle, false)
}

const gemini: McpAgent = {
  id: 'gemini',
  name: 'Gemini CLI',
  format: 'json',
  defaultScope: 'project',
  files: { project: ({ cwd }) => join(cwd, '.gemini', 'settings.json'), user: ({ home }) => join(home, '.gemini', 'settings.json') },
  entryPath: () => ['mcpServers', SAGE_SERVER_NAME],
  entry: jsonEntry('httpUrl', shellStyle, false)
}

export const MCP_AGENTS: readonly McpAgent[] = [claudeCode, cursor, codex, vscode, windsurf, gemini]

export function mcpAgent(id: string): McpAgent {
  const agent = MCP_AGENTS.find((known) => known.id === id)
  if (!agent) throw new Error(`unknown agent "${id}"; the agents are ${MCP_AGENTS.map((known) => known.id).join(', ')}`)
  return agent
}
