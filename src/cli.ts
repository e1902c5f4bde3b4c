#!/usr/bin/env node
import type { Command } from './commands/command.js'
import { doctor } from './commands/doctor.js'
import { exportCommand } from './commands/export.js'
import { hooks } from './commands/hooks.js'
import { importCommand } from './commands/import.js'
import { keys } from './commands/keys.js'
import { mcp } from './commands/mcp.js'
import { migrate } from './commands/migrate.js'
import { models } from './commands/models.js'
import { runCommand } from './commands/parse-command-args.js'
import { queue } from './commands/queue.js'
import { reembed } from './commands/reembed.js'
import { serve } from './commands/serve.js'
import { service } from './commands/service.js'
import { PACKAGE_VERSION } from './package-root.js'

/** Every subcommand, by name; each lives in src/commands/. */
const COMMANDS: Record<string, Command> = {
  serve,
  migrate,
  reembed,
  hooks,
  mcp,
  import: importCommand,
  export: exportCommand,
  queue,
  models,
  doctor,
  keys,
  service
}

function usage(): string {
  const lines = ['sage-memory: memory service for AI coding agents', '', 'Usage:']
  for (const [name, command] of Object.entries(COMMANDS)) {
    lines.push(`  sage-memory ${name.padEnd(10)} ${command.summary}`)
    if (command.usage) lines.push(...command.usage.split('\n').map((line) => `      ${line}`))
  }
  lines.push('  sage-memory help       this text', '  sage-memory --version  the version', '', 'With no command, sage-memory serves.')
  return lines.join('\n')
}

async function main(argv: string[]): Promise<number | undefined> {
  const [name = 'serve', ...args] = argv
  if (name === 'help' || name === '--help' || name === '-h') {
    console.log(usage())
    return 0
  }
  if (name === '--version' || name === '-v' || name === 'version') {
    console.log(`sage-memory ${PACKAGE_VERSION}`)
    return 0
  }
  const command = COMMANDS[name]
  if (!command) {
    console.error(`sage-memory: unknown command "${name}"\n\n${usage()}`)
    return 2
  }
  return runCommand(name, command, args)
}

main(process.argv.slice(2)).then(
  (code) => {
    if (code !== undefined) process.exitCode = code
  },
  (error: Error) => {
    console.error(`sage-memory: ${error.message}`)
    process.exitCode = 1
  }
)
