import { homedir } from 'node:os'
import { parseArgs } from 'node:util'
import { installHooks, SAGE_HOOK_EVENTS, settingsPathFor, uninstallHooks } from '../hooks/claude-settings.js'
import type { Command } from './command.js'

const USAGE = `install [--user|--local] [--url http://127.0.0.1:8765] [--key-env SAGE_API_KEY] [--namespace N] [--timeout SECONDS]
uninstall [--user|--local]
  default: the project's .claude/settings.json; --local: .claude/settings.local.json; --user: ~/.claude/settings.json`

/** `sage-memory hooks install|uninstall`: Sage's hooks in a Claude Code settings file, merged, backed up, reversible. */
export const hooks: Command = {
  summary: "add Sage's hooks to Claude Code's settings (or remove them)",
  usage: USAGE,
  async run(args) {
    const { values, positionals } = parseArgs({
      args,
      allowPositionals: true,
      options: {
        user: { type: 'boolean', default: false },
        local: { type: 'boolean', default: false },
        url: { type: 'string', default: 'http://127.0.0.1:8765' },
        'key-env': { type: 'string' },
        namespace: { type: 'string' },
        timeout: { type: 'string' },
        help: { type: 'boolean', short: 'h', default: false }
      }
    })
    const [action, ...rest] = positionals
    if (values.help || action === undefined) {
      console.log(`Usage: sage-memory hooks ${USAGE.replace(/\n(?! )/g, '\n       sage-memory hooks ')}`)
      return values.help ? 0 : 2
    }
    if (rest.length > 0) throw new Error(`unexpected argument "${rest[0]}"`)
    if (values.user && values.local) throw new Error('choose one of --user and --local')
    const scope = values.user ? 'user' : values.local ? 'local' : 'project'
    const path = settingsPathFor(scope, process.cwd(), homedir())

    if (action === 'install') {
      const timeoutSeconds = values.timeout === undefined ? undefined : Number(values.timeout)
      const result = await installHooks(path, {
        baseUrl: values.url,
        apiKeyEnv: values['key-env'],
        namespace: values.namespace,
        timeoutSeconds
      })
      if (!result.changed) {
        console.log(`Sage's hooks are already in ${path}; nothing changed.`)
      } else {
        console.log(`Sage's hooks written to ${path}`)
        console.log(`  added or updated: ${result.added.join(', ')}`)
        if (result.backupPath) console.log(`  backup of the previous file: ${result.backupPath}`)
      }
      console.log(`  events: ${SAGE_HOOK_EVENTS.join(', ')} -> ${values.url}`)
      const keyEnv = values['key-env']
      if (keyEnv !== undefined && !process.env[keyEnv]) {
        console.log(`  note: ${keyEnv} is not set in this shell; Claude Code must see it in its environment`)
      }
      return 0
    }
    if (action === 'uninstall') {
      const result = await uninstallHooks(path)
      if (!result.changed) {
        console.log(`No Sage hooks in ${path}; nothing changed.`)
      } else {
        console.log(`Sage's hooks removed from ${path}`)
        console.log(`  removed: ${result.removed.join(', ')}`)
        if (result.backupPath) console.log(`  backup of the previous file: ${result.backupPath}`)
      }
      return 0
    }
    throw new Error(`unknown hooks action "${action}"; use install or uninstall`)
  }
}
