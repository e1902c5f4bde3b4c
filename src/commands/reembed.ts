import { loadConfig } from '../config.js'
import { createDatabase } from '../db/create-database.js'
import { migrate } from '../db/migrate.js'
import { createEmbedder } from '../embedder/create-embedder.js'
import { rebindEmbedder } from '../db/embedder-binding.js'
import type { Command } from './command.js'
import { parseCommandArgs } from './parse-command-args.js'

export const reembed: Command = {
  summary: 'switch the store to the configured embedder: old vectors are cleared and the running service re-embeds every memory in the background',
  async run(args) {
    parseCommandArgs(args, {})
    const config = loadConfig()
    const db = await createDatabase(config)
    try {
      await migrate(db)
      const embedder = await createEmbedder(config)
      try {
        const cleared = await rebindEmbedder(db, embedder)
        console.log(`store now bound to ${embedder.id}; ${cleared} memories will be re-embedded by the service`)
      } finally {
        await embedder.close?.()
      }
    } finally {
      await db.close()
    }
    return 0
  }
}
