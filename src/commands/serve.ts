import { loadConfig } from '../config.js'
import { startServer } from '../server.js'
import type { Command } from './command.js'

export const serve: Command = {
  summary: 'run the service (configuration from the environment; see the README)',
  async run() {
    await startServer(loadConfig())
    return undefined
  }
}
