import { loadConfig } from '../config.js'
import { startServer } from '../server.js'
import type { Command } from './command.js'
import { parseCommandArgs } from './parse-command-args.js'

export const serve: Command = {
  summary: 'run the service (configuration from the environment; see the README)',
  async run(args) {
    parseCommandArgs(args, {})
    await startServer(loadConfig())
    return undefined
  }
}
