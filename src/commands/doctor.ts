import { readFile } from 'node:fs/promises'
import { homedir } from 'node:os'
import { join } from 'node:path'
import { parse as parseToml } from 'smol-toml'
import { readSageHooks, SAGE_HOOK_PATH, type FoundSageHook } from '../client/claude-settings.js'
import { findProjectSetting } from '../hooks/project-mode.js'
import { MCP_AGENTS, type AgentPlaces, type McpScope } from '../mcp/mcp-agents.js'
import type { Command } from './command.js'
import { DEFAULT_SAGE_URL } from './hooks.js'
import { parseCommandArgs } from './parse-command-args.js'
import { probeSage, type Probe } from './probe-sage.js'

const USAGE = `[--url $SAGE_URL or ${DEFAULT_SAGE_URL}] [--key-env VAR] [--prompt "…"]
  checks Sage, the key, the hooks and MCP entries of this folder and the user; --prompt shows what it would inject and why (saves nothing)`

type Verdict = 'ok' | 'warn' | 'FAIL'
interface Check {
  verdict: Verdict
  what: string
  fix?: string
}

/** The files where Claude Code's (and Codex's) hooks may point at Sage, in the order they are shown. */
const HOOK_FILES: ReadonlyArray<{ label: string; level?: 'project' | 'local' | 'user'; path(cwd: string, home: string): string }> = [
  { label: 'Claude Code, project', level: 'project', path: (cwd) => join(cwd, '.claude', 'settings.json') },
  { label: 'Claude Code, local', level: 'local', path: (cwd) => join(cwd, '.claude', 'settings.local.json') },
  { label: 'Claude Code, user', level: 'user', path: (_cwd, home) => join(home, '.claude', 'settings.json') },
  { label: 'Codex hooks, project', path: (cwd) => join(cwd, '.codex', 'hooks.json') },
  { label: 'Codex hooks, user', path: (_cwd, home) => join(home, '.codex', 'hooks.json') }
]
const UNINSTALL_FLAG = { project: '', local: ' --local', user: ' --user' } as const

/** `sage-memory doctor`: is Sage reachable, is the key good, where are the hooks, and what would a prompt get. */
export const doctor: Command = {
  summary: 'check that Sage, the key and the hooks work here, each with a verdict and its fix',
  usage: USAGE,
  async run(args) {
    const { values } = parseCommandArgs(args, {
      url: { type: 'string', default: process.env.SAGE_URL || DEFAULT_SAGE_URL },
      'key-env': { type: 'string' },
      prompt: { type: 'string' }
    })
    const cwd = process.cwd()
    const home = homedir()
    const url = values.url.replace(/\/+$/, '')
    const checks: Check[] = []
    const report = (check: Check) => {
      checks.push(check)
      console.log(`${check.verdict.padEnd(4)}  ${check.what}`)
      if (check.fix) console.log(`      fix: ${check.fix}`)
    }

    const found = await agentFiles(cwd, home)
    const hookKeyEnv = found.flatMap((f) => f.hooks).find((h) => h.keyEnv)?.keyEnv
    const keyEnv = values['key-env'] ?? hookKeyEnv ?? 'SAGE_API_KEY'
    const key = process.env[keyEnv] || undefined

    const probe = await probeSage(url, key)
    report(serviceCheck(url, probe))
    if (probe.reachable) report(keyCheck(keyEnv, key, probe))
    for (const check of await agentChecks(found, url)) report(check)
    report(await projectCheck(cwd))

    const usable = probe.reachable && typeof probe.access === 'object'
    if (usable) report(await namespaceCheck(url, key, cwd))
    if (values.prompt !== undefined) {
      if (!usable) report({ verdict: 'FAIL', what: '--prompt: Sage must answer with a valid key to say what it would inject', fix: 'fix the checks above first' })
      else await explainPrompt(url, key, cwd, values.prompt, report)
    }
    const failed = checks.filter((c) => c.verdict === 'FAIL').length
    const warned = checks.filter((c) => c.verdict === 'warn').length
    console.log(failed > 0 ? `\n${failed} ${failed === 1 ? 'check fails' : 'checks fail'}: see the fixes above.` : warned > 0 ? `\nSage works here, with ${warned} ${warned === 1 ? 'warning' : 'warnings'}.` : '\nSage works here.')
    return failed > 0 ? 1 : 0
  }
}

function serviceCheck(url: string, probe: Probe): Check {
  if (!probe.reachable) return { verdict: 'FAIL', what: `Sage does not answer at ${url}: ${probe.problem}`, fix: 'start it (sage-memory serve, or npm start in its folder), or set SAGE_URL (or --url) to where it listens' }
  if (!probe.ready) return { verdict: 'FAIL', what: `Sage answers at ${url} but is not ready: its database does not answer`, fix: `look at ${url}/health/ready and Sage's log; check DATABASE_URL` }
  return { verdict: 'ok', what: `Sage answers at ${url} and is ready` }
}

function keyCheck(keyEnv: string, key: string | undefined, probe: Extract<Probe, { reachable: true }>): Check {
  const access = probe.access
  if (access === 'key required') {
    return { verdict: 'FAIL', what: `Sage requires an API key and ${keyEnv} is not set here`, fix: `export ${keyEnv}=<your key> in the shell Claude Code starts from (and install the hooks with --key-env ${keyEnv})` }
  }
  if (access === 'key refused') return { verdict: 'FAIL', what: `Sage does not accept the key in ${keyEnv}${probe.problem ? ` (${probe.problem})` : ''}`, fix: `set ${keyEnv} to a key listed in Sage's SAGE_API_KEYS (name:secret=scopes)` }
  if (!access.keys_required) return { verdict: 'ok', what: `Sage is open (no keys configured)${key ? `; ${keyEnv} is set but not needed` : ''}` }
  return { verdict: 'ok', what: `the key in ${keyEnv} is accepted: "${access.key}", scopes ${access.scopes.join(', ')}, ${access.can_delete ? 'may delete' : 'may not delete'}` }
}

interface FoundFile {
  label: string
  level?: 'project' | 'local' | 'user'
  path: string
  hooks: FoundSageHook[]
  mcp: Array<{ name: string; target: string; url?: string }>
  problem?: string
}

async function agentFiles(cwd: string, home: string): Promise<FoundFile[]> {
  const found: FoundFile[] = []
  for (const file of HOOK_FILES) {
    const path = file.path(cwd, home)
    if (!(await readFile(path, 'utf8').then(() => true, () => false))) continue
    const entry: FoundFile = { label: file.label, level: file.level, path, hooks: [], mcp: [] }
    try {
      entry.hooks = await readSageHooks(path)
    } catch (error) {
      entry.problem = (error as Error).message
    }
    found.push(entry)
  }
  // Every MCP file `mcp install` can write, from the agents' own list, so a new agent is checked without a line here.
  const where: AgentPlaces = { cwd, home, env: process.env }
  for (const agent of MCP_AGENTS) {
    for (const [scope, place] of Object.entries(agent.files) as Array<[McpScope, (w: AgentPlaces) => string]>) {
      const path = place(where)
      const text = await readFile(path, 'utf8').catch(() => undefined)
      if (text === undefined) continue
      const entry: FoundFile = { label: `${agent.name} MCP, ${scope}`, path, hooks: [], mcp: [] }
      try {
        const parsed: unknown = agent.format === 'toml' ? parseToml(text) : JSON.parse(text)
        entry.mcp = sageMcpEntries(valueAt(parsed, agent.entryPath(scope, where).slice(0, -1)))
      } catch (error) {
        entry.problem = (error as Error).message
      }
      found.push(entry)
    }
  }
  return found
}

/** The value at a path of keys inside parsed settings, or undefined. */
function valueAt(value: unknown, path: readonly string[]): unknown {
  let here = value
  for (const key of path) here = typeof here === 'object' && here !== null ? (here as Record<string, unknown>)[key] : undefined
  return here
}

/** MCP servers that are Sage: named so, or started as sage-memory, or at a Sage /mcp URL. */
function sageMcpEntries(servers: unknown): FoundFile['mcp'] {
  if (typeof servers !== 'object' || servers === null) return []
  const entries: FoundFile['mcp'] = []
  for (const [name, raw] of Object.entries(servers as Record<string, unknown>)) {
    const server = (raw ?? {}) as { command?: unknown; args?: unknown; url?: unknown; serverUrl?: unknown; httpUrl?: unknown }
    const command = [server.command, ...(Array.isArray(server.args) ? server.args : [])].filter((part) => typeof part === 'string').join(' ')
    // Agents name the URL differently: url (most), serverUrl (Windsurf), httpUrl (Gemini CLI).
    const url = [server.url, server.serverUrl, server.httpUrl].find((u): u is string => typeof u === 'string')
    if (/sage/i.test(name) || command.includes('sage-memory') || (url !== undefined && /\/mcp\/?$/.test(url) && /sage/i.test(url + name))) {
      entries.push({ name, target: url ?? command, url })
    }
  }
  return entries
}

/** The base a hook URL calls: everything before /hooks/claude-code. */
const baseOf = (hookUrl: string) => hookUrl.slice(0, hookUrl.indexOf(SAGE_HOOK_PATH))

async function agentChecks(found: FoundFile[], url: string): Promise<Check[]> {
  const checks: Check[] = []
  const reachable = new Map<string, Promise<boolean>>()
  const answers = (base: string) => {
    if (!reachable.has(base)) reachable.set(base, probeSage(base).then((p) => p.reachable))
    return reachable.get(base)!
  }
  for (const file of found) {
    if (file.problem) {
      checks.push({ verdict: 'FAIL', what: `${file.label} (${file.path}) cannot be read: ${file.problem}`, fix: 'fix the file by hand' })
      continue
    }
    const bases = [...new Set(file.hooks.map((h) => (h.url ? baseOf(h.url) : '(no URL)')))]
    for (const base of bases) {
      const events = file.hooks.filter((h) => (h.url ? baseOf(h.url) : '(no URL)') === base).map((h) => h.event)
      const what = `${file.label} (${file.path}): Sage's hooks for ${events.join(', ')} -> ${base}`
      if (base === '(no URL)' || !(await answers(base))) checks.push({ verdict: 'FAIL', what: `${what}, where nothing answers`, fix: `start Sage there, or reinstall: sage-memory hooks install${file.level ? UNINSTALL_FLAG[file.level] : ''} --url <where Sage listens>` })
      else if (base.replace(/\/+$/, '') !== url) checks.push({ verdict: 'warn', what: `${what}, not ${url} (SAGE_URL) that this check used`, fix: 'set SAGE_URL to the address the hooks use, or reinstall them with --url' })
      else checks.push({ verdict: 'ok', what })
    }
    for (const server of file.mcp) {
      const what = `${file.label} (${file.path}): MCP server "${server.name}" -> ${server.target}`
      if (server.url && !(await answers(new URL(server.url).origin))) checks.push({ verdict: 'FAIL', what: `${what}, where nothing answers`, fix: 'start Sage there, or correct the URL in the file' })
      else checks.push({ verdict: 'ok', what })
    }
  }
  const levels = found.filter((f) => f.level && f.hooks.length > 0)
  if (levels.length > 1) {
    checks.push({
      verdict: 'warn',
      what: `Sage's hooks are installed at ${levels.length} levels (${levels.map((f) => f.level).join(', ')}): each event is saved and injected twice`,
      fix: `keep one: ${levels.slice(1).map((f) => `sage-memory hooks uninstall${UNINSTALL_FLAG[f.level!]}`).join('; ')}`
    })
  }
  if (levels.length === 0) checks.push({ verdict: 'warn', what: "Claude Code has no Sage hooks for this folder (project, local or user settings)", fix: 'sage-memory hooks install (in the project), or --user for every project' })
  return checks
}

async function projectCheck(cwd: string): Promise<Check> {
  const setting = await findProjectSetting(cwd)
  if (setting.problem) return { verdict: 'warn', what: `project setting: ${setting.problem}`, fix: 'write {"mode": "on"}, {"mode": "save-only"} or {"mode": "off"} there' }
  if (!setting.path) return { verdict: 'ok', what: 'project setting: on (no .sage.json): sessions are saved and injected' }
  const meaning = { on: 'sessions are saved and injected', 'save-only': 'sessions are saved, nothing is injected', off: 'nothing is saved or injected: the hooks answer {} at once' }[setting.mode]
  return { verdict: 'ok', what: `project setting: ${setting.mode} (${setting.path}): ${meaning}` }
}

interface DryRun {
  namespace: string | null
  project_mode: string
  would_save: boolean
  injection: { outcome: string; took_ms: number; hits: Array<{ id: string; injected: boolean; rule: string; score?: number; scores?: Record<string, unknown>; [field: string]: unknown }> } | null
}

async function dryRun(url: string, key: string | undefined, body: Record<string, unknown>): Promise<{ answer: Record<string, unknown>; dryRun?: DryRun }> {
  const res = await fetch(`${url}${SAGE_HOOK_PATH}?dry_run=true`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(key ? { authorization: `Bearer ${key}` } : {}) },
    body: JSON.stringify(body),
    signal: AbortSignal.timeout(30_000)
  })
  if (!res.ok) throw new Error(`the hook answered ${res.status}`)
  const { dry_run, ...answer } = (await res.json()) as Record<string, unknown> & { dry_run?: DryRun }
  return { answer, dryRun: dry_run }
}

async function namespaceCheck(url: string, key: string | undefined, cwd: string): Promise<Check> {
  try {
    // A Stop that saves nothing: it only says which namespace this folder is.
    const { dryRun: result } = await dryRun(url, key, { hook_event_name: 'Stop', cwd, last_assistant_message: 'sage-memory doctor' })
    if (!result) return { verdict: 'warn', what: 'this Sage has no dry run; it is older than this command', fix: 'update Sage' }
    if (result.namespace === null && result.project_mode !== 'off') {
      return { verdict: 'FAIL', what: "the hooks' key may not use this folder's namespace: the hook answers {} and saves nothing", fix: "add the namespace to the key's scopes in SAGE_API_KEYS, or install the hooks with --namespace" }
    }
    return { verdict: 'ok', what: result.namespace === null ? 'this folder: opted out' : `this folder's namespace: ${result.namespace}` }
  } catch (error) {
    return { verdict: 'FAIL', what: `the hook route does not answer a dry run: ${(error as Error).message}`, fix: `look at Sage's log` }
  }
}

const fixed = (n: unknown) => (typeof n === 'number' ? n.toFixed(3) : '—')
const line = (text: string, max = 110) => {
  const one = text.replace(/\s+/g, ' ').trim()
  return one.length > max ? `${one.slice(0, max - 1)}…` : one
}

const OUTCOMES: Record<string, string> = {
  injected: 'it would be injected with the memories marked +',
  nothing_recalled: 'nothing would be injected: recall finds nothing in this namespace',
  none_relevant: 'nothing would be injected: no memory recalled passes the relevance rule',
  deadline: 'nothing would be injected: the answer would miss HOOK_DEADLINE_MS',
  unavailable: 'nothing would be injected: the database is unavailable',
  save_only: 'nothing would be injected: the project is save-only'
}

async function explainPrompt(url: string, key: string | undefined, cwd: string, prompt: string, report: (check: Check) => void): Promise<void> {
  const { answer, dryRun: result } = await dryRun(url, key, { hook_event_name: 'UserPromptSubmit', cwd, prompt })
  const injection = result?.injection
  if (!result || !injection) {
    report({ verdict: result?.project_mode === 'off' ? 'ok' : 'warn', what: `--prompt: nothing would be saved or injected (project ${result?.project_mode ?? 'unknown'})` })
    return
  }
  const what = `--prompt in namespace ${result.namespace}: ${OUTCOMES[injection.outcome] ?? injection.outcome} (${injection.took_ms} ms; nothing was saved)`
  if (injection.outcome === 'deadline') report({ verdict: 'warn', what, fix: "a first recall warms Sage's caches, so try again; if it stays slow, raise HOOK_DEADLINE_MS or look at the database's latency (/health/ready)" })
  else if (injection.outcome === 'unavailable') report({ verdict: 'FAIL', what, fix: `look at ${url}/health/ready and Sage's log` })
  else report({ verdict: 'ok', what })
  for (const hit of injection.hits) {
    const memory = await fetch(`${url}/v1/memories/${hit.id}`, { headers: key ? { authorization: `Bearer ${key}` } : {} }).then(
      (r) => (r.ok ? ((r.json() as Promise<{ role: string; content: string }>)) : undefined),
      () => undefined
    )
    const scores = Object.entries(hit.scores ?? {}).map(([name, v]) => `${name} ${fixed(v)}`).join(', ')
    const terms = Array.isArray(hit.matched_terms) && hit.matched_terms.length > 0 ? `; matched ${(hit.matched_terms as unknown[]).join(', ')}` : ''
    console.log(`      ${hit.injected ? '+' : '-'} ${fixed(hit.score)} (${scores}${terms}) ${hit.rule}: ${memory ? `[${memory.role}] ${line(memory.content)}` : hit.id}`)
  }
  const context = (answer.hookSpecificOutput as { additionalContext?: string } | undefined)?.additionalContext
  if (context) console.log(`      what the agent would read:\n${context.split('\n').map((l) => `        ${l}`).join('\n')}`)
}
