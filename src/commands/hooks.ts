import { homedir } from 'node:os'
import { join } from 'node:path'
import {
  buildSageHooks, HookOptionError, installHooks, readSageHooks, SAGE_HOOK_EVENTS, settingsPathFor, uninstallHooks, type SageHookOptions, type SettingsScope
} from '../client/claude-settings.js'
import { findProjectSetting } from '../hooks/project-mode.js'
import { userDataDir } from '../user-data-dir.js'
import type { Command } from './command.js'
import { parseCommandArgs, UsageError } from './parse-command-args.js'
import { probeSage } from './probe-sage.js'

export const DEFAULT_SAGE_URL = 'http://127.0.0.1:8765'

const USAGE = `install [--user|--local] [--url $SAGE_URL or ${DEFAULT_SAGE_URL}] [--key-env SAGE_API_KEY] [--namespace N] [--timeout SECONDS] [--no-check]
uninstall [--user|--local]
  default: the project's .claude/settings.json; --local: .claude/settings.local.json; --user: ~/.claude/settings.json
  install checks that Sage answers at the URL (and takes the key) unless --no-check`

/** The flag behind each option, so an error names what the user typed. */
const FLAGS: Record<keyof SageHookOptions, string> = { baseUrl: '--url', apiKeyEnv: '--key-env', namespace: '--namespace', timeoutSeconds: '--timeout' }
const SCOPES: readonly SettingsScope[] = ['project', 'local', 'user']
const FLAG_OF_SCOPE: Record<SettingsScope, string> = { project: '', local: ' --local', user: ' --user' }

/** Backups and the record of created files: the user's data folder, never the project's tree. */
export const settingsBackups = () => ({ dir: join(userDataDir(), 'settings-backups') })

/** `sage-memory hooks install|uninstall`: Sage's hooks in a Claude Code settings file, merged, backed up, reversible. */
export const hooks: Command = {
  summary: "add Sage's hooks to Claude Code's settings (or remove them)",
  usage: USAGE,
  async run(args) {
    const { values, positionals } = parseCommandArgs(args, {
      user: { type: 'boolean', default: false },
      local: { type: 'boolean', default: false },
      url: { type: 'string', default: process.env.SAGE_URL || DEFAULT_SAGE_URL },
      'key-env': { type: 'string' },
      namespace: { type: 'string' },
      timeout: { type: 'string' },
      'no-check': { type: 'boolean', default: false }
    }, true)
    const [action, ...rest] = positionals
    if (action !== 'install' && action !== 'uninstall') throw new UsageError(action === undefined ? 'name the action: install or uninstall' : `unknown action "${action}"; use install or uninstall`)
    if (rest.length > 0) throw new UsageError(`unexpected argument "${rest[0]}"`)
    if (values.user && values.local) throw new Error('choose one of --user and --local')
    const scope: SettingsScope = values.user ? 'user' : values.local ? 'local' : 'project'
    const cwd = process.cwd()
    const path = settingsPathFor(scope, cwd, homedir())

    if (action === 'install') {
      const project = await findProjectSetting(cwd)
      if (project.mode === 'off' && scope !== 'user') {
        throw new Error(`this project opted out of Sage in ${project.path}${project.problem ? ` (${project.problem})` : ''}; nothing was installed. Set "mode" to "on" or "save-only" there, or remove the file`)
      }
      const options: SageHookOptions = {
        baseUrl: values.url,
        apiKeyEnv: values['key-env'],
        namespace: values.namespace,
        timeoutSeconds: values.timeout === undefined ? undefined : Number(values.timeout)
      }
      // Bad options first, by the flag's name; then whether the hooks would reach anything.
      namingFlags(() => buildSageHooks(options))
      const notes = values['no-check'] ? [] : await checkSage(values.url, values['key-env'])
      const result = await installHooks(path, options, settingsBackups())
      if (!result.changed) {
        console.log(`Sage's hooks are already in ${path}; nothing changed.`)
      } else {
        console.log(`Sage's hooks written to ${path}`)
        console.log(`  added or updated: ${result.added.join(', ')}`)
        if (result.backupPath) console.log(`  backup of the previous file: ${result.backupPath}`)
      }
      console.log(`  events: ${SAGE_HOOK_EVENTS.join(', ')} -> ${values.url}`)
      for (const note of notes) console.log(`  note: ${note}`)
      if (project.mode === 'save-only') console.log(`  note: ${project.path} makes this project save-only: sessions are saved, nothing is injected`)
      if (project.mode === 'off') console.log(`  note: ${project.path} opts this project out: its sessions stay out of Sage`)
      for (const other of SCOPES.filter((s) => s !== scope)) {
        const otherPath = settingsPathFor(other, cwd, homedir())
        const found = await readSageHooks(otherPath).catch(() => [])
        if (found.length > 0) {
          console.log(`  warning: Sage's hooks are also in ${otherPath} (${other}): each event would be saved and injected twice. ` +
            `Remove one: sage-memory hooks uninstall${FLAG_OF_SCOPE[other]}`)
        }
      }
      return 0
    }
    const result = await uninstallHooks(path, settingsBackups())
    if (!result.changed) {
      console.log(`No Sage hooks in ${path}; nothing changed.`)
    } else {
      console.log(`Sage's hooks removed from ${path}`)
      console.log(`  removed: ${result.removed.join(', ')}`)
      if (result.deletedFile) console.log(`  ${path} was created by hooks install and holds nothing else: deleted`)
      if (result.backupPath) console.log(`  backup of the previous file: ${result.backupPath}`)
    }
    return 0
  }
}

function namingFlags<T>(work: () => T): T {
  try {
    return work()
  } catch (error) {
    if (error instanceof HookOptionError) throw new Error(`${FLAGS[error.option]} ${error.rule}`, { cause: error })
    throw error
  }
}

/** Refuses an install that would point nowhere; answers notes worth printing. */
async function checkSage(url: string, keyEnv: string | undefined): Promise<string[]> {
  const key = keyEnv === undefined ? undefined : process.env[keyEnv] || undefined
  const probe = await probeSage(url, key)
  if (!probe.reachable) {
    throw new Error(`Sage does not answer at ${url}: ${probe.problem}. Start it (sage-memory serve), or give the address it listens on with --url or SAGE_URL; --no-check installs anyway`)
  }
  if (probe.access === 'key required') {
    if (keyEnv !== undefined) return [`${keyEnv} is not set in this shell, so the key was not checked; Claude Code must see it in its environment`]
    throw new Error(`Sage at ${url} requires an API key: pass --key-env with the name of the environment variable that holds yours (e.g. --key-env SAGE_API_KEY)`)
  }
  if (probe.access === 'key refused') throw new Error(`Sage at ${url} does not accept the key in ${keyEnv}${probe.problem ? ` (${probe.problem})` : ''}; check its value, or the key's entry in SAGE_API_KEYS`)
  const notes = [`Sage answers at ${url}${probe.ready ? '' : ' (but is not ready: its database does not answer)'}`]
  if (probe.access.keys_required) notes.push(`the key in ${keyEnv} is "${probe.access.key}", scopes ${probe.access.scopes.join(', ')}`)
  else if (keyEnv !== undefined) notes.push(`Sage at ${url} requires no key; the hooks send ${keyEnv} anyway`)
  return notes
}
