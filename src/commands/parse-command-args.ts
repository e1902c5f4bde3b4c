import { parseArgs, type ParseArgsConfig } from 'node:util'
import type { Command } from './command.js'

type Options = NonNullable<ParseArgsConfig['options']>
const HELP = { help: { type: 'boolean', short: 'h' } } as const

/** Arguments a command cannot run with: the CLI prints the message and the command's usage on stderr, exit 2. */
export class UsageError extends Error {}

/** `--help` or `-h`: the CLI prints the command's usage on stdout, exit 0. */
export class HelpRequested extends Error {}

/**
 * A command's arguments, by Node's own `util.parseArgs` (strict), with `--help`/`-h` for every command.
 * An unknown option, an option without its value (or with one it does not take) and an argument where none
 * is allowed throw a UsageError that names what was typed.
 */
export function parseCommandArgs<const O extends Options, const P extends boolean = false>(args: string[], options: O, allowPositionals?: P) {
  const all = { ...options, ...HELP }
  // Tokens first, unchecked, so each error can name the option as typed; then the strict parse gives the types.
  const { tokens } = parseArgs({ args, options: all, allowPositionals: true, strict: false, tokens: true })
  for (const token of tokens) {
    if (token.kind === 'positional' && !allowPositionals) throw new UsageError(`unexpected argument "${token.value}"`)
    if (token.kind !== 'option') continue
    const option = (all as Options)[token.name]
    if (option === undefined) throw new UsageError(`unknown option ${token.rawName}`)
    // As the strict parse: a value that looks like an option is a forgotten value (write --flag=-x for such a value).
    if (option.type === 'string' && (token.value === undefined || (!token.inlineValue && token.value.length > 1 && token.value.startsWith('-')))) {
      throw new UsageError(`${token.rawName} needs a value`)
    }
    if (option.type === 'boolean' && token.inlineValue) throw new UsageError(`${token.rawName} takes no value`)
  }
  const parsed = parseArgs({ args, options: all, allowPositionals: (allowPositionals ?? false) as P, strict: true })
  if ((parsed.values as { help?: boolean }).help) throw new HelpRequested()
  return parsed
}

/** The usage block: `Usage: sage-memory NAME …`, each action line under it with the same prefix, details indented. */
export function commandUsage(name: string, command: Command): string {
  const prefix = `sage-memory ${name}`
  if (!command.usage) return `Usage: ${prefix}\n  ${command.summary}`
  return command.usage
    .split('\n')
    .map((line, i) => (i === 0 ? `Usage: ${prefix} ${line}` : line.startsWith(' ') ? line : `       ${prefix} ${line}`))
    .join('\n')
}

/** Runs a command; a usage error or a help request answers with the command's usage, as every command does. */
export async function runCommand(name: string, command: Command, args: string[]): Promise<number | undefined> {
  try {
    return await command.run(args)
  } catch (error) {
    if (error instanceof HelpRequested) {
      console.log(commandUsage(name, command))
      return 0
    }
    if (error instanceof UsageError) {
      console.error(`sage-memory ${name}: ${error.message}\n\n${commandUsage(name, command)}`)
      return 2
    }
    throw error
  }
}
