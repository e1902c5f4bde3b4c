import { loadConfig } from '../config.js'
import { createDatabase } from '../db/create-database.js'
import { migrate as applyMigrations } from '../db/migrate.js'
import type { Command } from './command.js'
import { parseCommandArgs } from './parse-command-args.js'

export const migrate: Command = {
  summary: 'apply database migrations and exit (the service also applies them at start)',
  async run(args) {
    parseCommandArgs(args, {})
    const db = await createDatabase(loadConfig())
    try {
      const applied = await applyMigrations(db)
      console.log(applied.length ? `applied: ${applied.join(', ')}` : 'already up to date')
    } finally {
      await db.close()
    }
    return 0
  }
}
