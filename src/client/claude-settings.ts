import { join } from 'node:path'
import { isDeepStrictEqual } from 'node:util'
import { sageUrl, SageUrlError } from '../sage-url.js'
import { deleteCreatedSettingsFile, readSettingsFile, writeSettingsFile, type BackupOptions, type SettingsFile as TextFile } from '../settings-file.js'

export type { BackupOptions } from '../settings-file.js'

/**
 * Installs Sage's hooks into a Claude Code settings file and removes them again.
 *
 * A hook entry is Sage's own when it points at Sage's hook route: an `http` hook whose URL path ends in
 * `/hooks/claude-code`, or a `command` hook whose command contains `/hooks/claude-code`. Reinstalling
 * therefore replaces Sage's entries in place (new address, key or namespace) instead of adding more,
 * and every other hook and key in the file is left exactly as it was.
 */

export const SAGE_HOOK_PATH = '/hooks/claude-code'

/** Events that take an `http` hook; SessionStart accepts only `command` hooks, so it gets curl. */
export const SAGE_HTTP_EVENTS = ['UserPromptSubmit', 'Stop', 'SubagentStop', 'PostCompact'] as const
export const SAGE_HOOK_EVENTS = ['SessionStart', ...SAGE_HTTP_EVENTS] as const
export type SageHookEvent = (typeof SAGE_HOOK_EVENTS)[number]

export type HttpHook = { type: 'http'; url: string; timeout: number; headers?: Record<string, string> }
export type CommandHook = { type: 'command'; command: string; timeout: number }
export type SageHook = HttpHook | CommandHook
/** The settings-file shape: one matcher group per event, no matcher (these events match everything). */
export type SageHooks = { SessionStart: [{ hooks: [CommandHook] }] } & Record<
  (typeof SAGE_HTTP_EVENTS)[number],
  [{ hooks: [SageHook] }]
>

export type SageHookOptions = {
  /** Where Sage listens, e.g. http://127.0.0.1:8765 (a path prefix is kept). */
  baseUrl: string
  /** Name of the environment variable holding the API key, e.g. SAGE_API_KEY; never the key itself. */
  apiKeyEnv?: string
  namespace?: string
  /** Claude Code's `timeout` for each hook, in whole seconds. Default 3; curl gives up a second earlier. */
  timeoutSeconds?: number
}

export type InstallResult = { changed: boolean; backupPath?: string; added: string[]; created: boolean }
export type UninstallResult = { changed: boolean; backupPath?: string; removed: string[]; deletedFile: boolean }

/** A value of SageHookOptions that would install a hook that can never work; `option` names it, `rule` says why. */
export class HookOptionError extends RangeError {
  constructor(readonly option: keyof SageHookOptions, readonly rule: string) {
    super(`${option} ${rule}`)
  }
}

const DEFAULT_TIMEOUT_SECONDS = 3
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/

/**
 * The hooks Sage adds. With `apiKeyEnv`, every event uses a curl `command` hook, because a shell
 * certainly expands `$VAR` while `http` hook headers may not; without a key, only SessionStart does.
 * A command that cannot reach Sage, lacks its key or is refused exits 1 with one line on stderr: Claude
 * Code shows that to the user as a hook error and goes on (only exit 2 would block the prompt).
 */
export function buildSageHooks(opts: SageHookOptions): SageHooks {
  const url = sageHookUrl(opts.baseUrl, opts.namespace)
  const timeout = opts.timeoutSeconds ?? DEFAULT_TIMEOUT_SECONDS
  if (!Number.isInteger(timeout) || timeout < 1 || timeout > 600) {
    throw new HookOptionError('timeoutSeconds', `must be a whole number of seconds from 1 to 600, got ${timeout}`)
  }
  if (opts.apiKeyEnv !== undefined && !ENV_NAME.test(opts.apiKeyEnv)) {
    throw new HookOptionError('apiKeyEnv', `must be an environment variable name like SAGE_API_KEY, got "${opts.apiKeyEnv}"`)
  }
  const command: CommandHook = { type: 'command', command: curlCommand(url, opts.apiKeyEnv, timeout), timeout }
  const http: SageHook = opts.apiKeyEnv === undefined ? { type: 'http', url, timeout } : command
  return {
    SessionStart: [{ hooks: [command] }],
    UserPromptSubmit: [{ hooks: [http] }],
    Stop: [{ hooks: [http] }],
    SubagentStop: [{ hooks: [http] }],
    PostCompact: [{ hooks: [http] }]
  }
}

/** True for a hook entry that points at Sage's hook route (see the module comment). */
export function isSageHook(entry: unknown): boolean {
  if (typeof entry !== 'object' || entry === null) return false
  const hook = entry as Record<string, unknown>
  if (hook.type === 'http' && typeof hook.url === 'string') {
    try {
      return new URL(hook.url).pathname.replace(/\/+$/, '').endsWith(SAGE_HOOK_PATH)
    } catch {
      return false
    }
  }
  return hook.type === 'command' && typeof hook.command === 'string' && hook.command.includes(SAGE_HOOK_PATH)
}

/**
 * Merges Sage's hooks into the settings file, creating it (and its folders) when missing. Refuses a file
 * that is not a JSON object, changing nothing. Backs up an existing file before changing it and writes
 * atomically. `added` lists the events whose Sage hook was added or replaced.
 */
export async function installHooks(settingsPath: string, opts: SageHookOptions, backups?: BackupOptions): Promise<InstallResult> {
  const wanted = buildSageHooks(opts)
  const file = await readSettings(settingsPath)
  const settings = structuredClone(file.settings)
  const hooks = hooksOf(settings, settingsPath) ?? {}
  const added: string[] = []
  const placed = new Set<string>()

  // Replace Sage's first entry of each event in place, so its position among the user's hooks holds.
  for (const [event, groups] of Object.entries(hooks)) {
    const want = isSageHookEvent(event) ? wanted[event][0].hooks[0] : undefined
    hooks[event] = pruneSageHooks(groups, (entry) => {
      if (want === undefined || placed.has(event)) return undefined
      placed.add(event)
      if (isDeepStrictEqual(entry, want)) return entry
      added.push(event)
      return want
    })
    if (hooks[event].length === 0 && groups.length > 0) delete hooks[event]
  }
  for (const event of SAGE_HOOK_EVENTS) {
    if (placed.has(event)) continue
    const groups = hooks[event] ?? []
    groups.push(structuredClone(wanted[event][0]))
    hooks[event] = groups
    added.push(event)
  }
  settings.hooks = hooks

  const { changed, backupPath } = await writeIfChanged(file, settings, backups)
  return { changed, ...(backupPath === undefined ? {} : { backupPath }), added: changed ? added : [], created: changed && !file.exists }
}

/** Removes every Sage hook, and the matcher groups, event arrays and `hooks` object that this leaves empty. */
export async function uninstallHooks(settingsPath: string, backups?: BackupOptions): Promise<UninstallResult> {
  const file = await readSettings(settingsPath)
  if (!file.exists) return { changed: false, removed: [], deletedFile: false }
  const settings = structuredClone(file.settings)
  const hooks = hooksOf(settings, settingsPath)
  if (hooks === undefined) return { changed: false, removed: [], deletedFile: false }
  const removed: string[] = []
  for (const [event, groups] of Object.entries(hooks)) {
    let found = false
    hooks[event] = pruneSageHooks(groups, () => {
      found = true
      return undefined
    })
    if (found) removed.push(event)
    if (hooks[event].length === 0 && groups.length > 0) delete hooks[event]
  }
  if (Object.keys(hooks).length === 0 && removed.length > 0) delete settings.hooks
  // A file install created, holding nothing else now, goes the way it came.
  if (removed.length > 0 && Object.keys(settings).length === 0 && (await deleteCreatedSettingsFile(file, backups))) {
    return { changed: true, removed, deletedFile: true }
  }
  const { changed, backupPath } = await writeIfChanged(file, settings, backups)
  return { changed, ...(backupPath === undefined ? {} : { backupPath }), removed, deletedFile: false }
}

export type SettingsScope = 'project' | 'local' | 'user'

/** `project`: `<cwd>/.claude/settings.json`; `local`: the uncommitted `settings.local.json` beside it; `user`: `<home>/.claude/settings.json`. */
export function settingsPathFor(scope: SettingsScope, cwd: string, home: string): string {
  if (scope === 'user') return join(home, '.claude', 'settings.json')
  return join(cwd, '.claude', scope === 'local' ? 'settings.local.json' : 'settings.json')
}

/** One of Sage's hooks found in a settings file, with the URL it calls and the key variable it sends. */
export interface FoundSageHook {
  event: string
  type: string
  url: string | undefined
  keyEnv: string | undefined
}

/** Sage's hooks in a settings file (none when it is missing); throws for a file that is not a settings object. */
export async function readSageHooks(settingsPath: string): Promise<FoundSageHook[]> {
  const file = await readSettings(settingsPath)
  const hooks = file.exists ? hooksOf(file.settings, settingsPath) : undefined
  const found: FoundSageHook[] = []
  for (const [event, groups] of Object.entries(hooks ?? {})) {
    for (const group of groups) {
      const entries = (group as MatcherGroup | null)?.hooks
      for (const entry of Array.isArray(entries) ? entries : []) {
        if (!isSageHook(entry)) continue
        const hook = entry as Record<string, unknown>
        const command = typeof hook.command === 'string' ? hook.command : ''
        const url = typeof hook.url === 'string' ? hook.url : /'(https?:\/\/[^']*)'/.exec(command)?.[1]
        found.push({ event, type: String(hook.type), url, keyEnv: /Bearer \$\{?([A-Za-z_][A-Za-z0-9_]*)/.exec(command)?.[1] })
      }
    }
  }
  return found
}

type JsonObject = Record<string, unknown>
type MatcherGroup = JsonObject & { hooks?: unknown }
type SettingsFile = TextFile & { settings: JsonObject }

function sageHookUrl(baseUrl: string, namespace: string | undefined): string {
  try {
    return sageUrl(baseUrl, SAGE_HOOK_PATH, namespace).toString()
  } catch (error) {
    if (error instanceof SageUrlError) throw new HookOptionError(error.part, error.rule)
    throw error
  }
}

/**
 * curl gives up a second before Claude Code would kill the hook; `-f` keeps an error body off stdout. On any
 * failure (no key in the environment, Sage unreachable, an error status) the command says so in one line on
 * stderr and exits 1, which Claude Code shows as a hook error without blocking anything.
 */
function curlCommand(url: string, apiKeyEnv: string | undefined, timeoutSeconds: number): string {
  const curl = [
    'curl -sSf',
    `--max-time ${Math.max(1, timeoutSeconds - 1)}`,
    '-X POST',
    "-H 'Content-Type: application/json'",
    ...(apiKeyEnv === undefined ? [] : [`-H "Authorization: Bearer $${apiKeyEnv}"`]),
    '--data-binary @-',
    shellQuote(url)
  ].join(' ')
  const keyCheck = apiKeyEnv === undefined
    ? ''
    : `[ -n "$${apiKeyEnv}" ] || { echo ${shellQuote(`Sage: ${apiKeyEnv} is not set where Claude Code runs; nothing was saved or recalled`)} >&2; exit 1; }; `
  const failure = shellQuote(`Sage at ${url} failed, nothing was saved or recalled (sage-memory doctor says why): `)
  return `${keyCheck}out=$(${curl} 2>&1) || { echo ${failure}"$out" >&2; exit 1; }; printf '%s' "$out"`
}

function shellQuote(text: string): string {
  return `'${text.replace(/'/g, `'\\''`)}'`
}

/**
 * Returns the event's groups with each Sage hook swapped for what `replace` gives (or dropped when it gives
 * nothing), and the groups this empties removed. Groups without a Sage hook are returned untouched.
 */
function pruneSageHooks(groups: unknown[], replace: (entry: unknown) => unknown): unknown[] {
  const kept: unknown[] = []
  for (const group of groups) {
    const entries = (group as MatcherGroup | null)?.hooks
    if (!Array.isArray(entries) || !entries.some(isSageHook)) {
      kept.push(group)
      continue
    }
    const next = entries.flatMap((entry) => {
      if (!isSageHook(entry)) return [entry]
      const replacement = replace(entry)
      return replacement === undefined ? [] : [replacement]
    })
    if (next.length > 0) kept.push({ ...(group as MatcherGroup), hooks: next })
  }
  return kept
}

/** The `hooks` object with every event checked to be an array; refuses shapes it would have to guess about. */
function hooksOf(settings: JsonObject, path: string): Record<string, unknown[]> | undefined {
  const hooks = settings.hooks
  if (hooks === undefined) return undefined
  if (typeof hooks !== 'object' || hooks === null || Array.isArray(hooks)) {
    throw new Error(`${path}: "hooks" is not a JSON object; fix it by hand, nothing was changed`)
  }
  for (const [event, groups] of Object.entries(hooks)) {
    if (!Array.isArray(groups)) throw new Error(`${path}: "hooks.${event}" is not an array; fix it by hand, nothing was changed`)
  }
  return hooks as Record<string, unknown[]>
}

async function readSettings(settingsPath: string): Promise<SettingsFile> {
  const file = await readSettingsFile(settingsPath)
  if (file.text.trim() === '') return { ...file, settings: {} }
  let parsed: unknown
  try {
    parsed = JSON.parse(file.text.replace(/^\uFEFF/, ''))
  } catch (error) {
    throw new Error(`${file.path} is not valid JSON (${(error as Error).message}); fix it by hand, nothing was changed`, {
      cause: error
    })
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw new Error(`${file.path} does not hold a JSON object; fix it by hand, nothing was changed`)
  }
  return { ...file, settings: parsed as JsonObject }
}

async function writeIfChanged(
  file: SettingsFile,
  settings: JsonObject,
  backups?: BackupOptions
): Promise<{ changed: boolean; backupPath?: string }> {
  if (file.exists && isDeepStrictEqual(settings, file.settings)) return { changed: false }
  return { changed: true, ...(await writeSettingsFile(file, `${JSON.stringify(settings, null, 2)}\n`, backups)) }
}

function isSageHookEvent(event: string): event is SageHookEvent {
  return (SAGE_HOOK_EVENTS as readonly string[]).includes(event)
}
