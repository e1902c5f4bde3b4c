import { randomBytes } from 'node:crypto'
import { parseApiKeys } from '../security/api-keys.js'
import type { Command } from './command.js'
import { parseCommandArgs, UsageError } from './parse-command-args.js'

const USAGE = `new [--name NAME] [--scope PATTERN[,PATTERN…]] [--delete]
  prints a new key entry for SAGE_API_KEYS (or one line of SAGE_API_KEYS_FILE) and how the hooks use it;
  default: --name me --scope '*'`

/** 32 random bytes: as hard to guess as the hash Sage keeps of it is to invert. */
export function newSecret(): string {
  return randomBytes(32).toString('base64url')
}

/** `sage-memory keys new`: a key entry in the format src/security/api-keys.ts reads, checked by that same parser. */
export const keys: Command = {
  summary: 'make a new API key entry and say how to use it',
  usage: USAGE,
  async run(args) {
    const { values, positionals } = parseCommandArgs(args, {
      name: { type: 'string', default: 'me' },
      scope: { type: 'string', default: '*' },
      delete: { type: 'boolean', default: false }
    }, true)
    const [action, ...rest] = positionals
    if (action !== 'new') throw new UsageError(action === undefined ? 'name the action: new' : `unknown action "${action}"; use new`)
    if (rest.length > 0) throw new UsageError(`unexpected argument "${rest[0]}"`)
    const secret = newSecret()
    const entry = `${values.name}:${secret}=${values.scope}${values.delete ? ':delete' : ''}`
    // Refuses a bad name or scope with the parser's own message, never printing an entry Sage would not start with.
    parseApiKeys(entry, '--name/--scope')
    console.log(entry)
    console.error(
      [
        '',
        'The line above is the key entry; the secret is the part between the first ":" and the last "=".',
        `  Service: add it to SAGE_API_KEYS in the service's environment file (.env for docker compose), entries separated by ";":`,
        `      SAGE_API_KEYS='${entry}'`,
        '    or as a line of the file SAGE_API_KEYS_FILE names; then reload the service (SIGHUP) or restart it.',
        '  Hooks and commands: give them the secret, never the whole entry:',
        `      export SAGE_API_KEY='${secret}'`,
        '      sage-memory hooks install --key-env SAGE_API_KEY',
        'Sage keeps only a hash of the secret: store it somewhere safe now, it cannot be shown again.'
      ].join('\n')
    )
    return 0
  }
}
