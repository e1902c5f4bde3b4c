import { loadConfig } from '../config.js'
import { DataDirLockedError } from '../db/data-dir-lock.js'
import { createDatabase } from '../db/create-database.js'
import { migrate as applyMigrations } from '../db/migrate.js'
import type { Command } from './command.js'
import { parseCommandArgs } from './parse-command-args.js'

export const migrate: Command = {
  summary: 'apply database migrations and exit (the service also applies them at start)',
  async run(args) {
    parseCommandArgs(args, {})
    let db
    try {
      db = await createDatabase(loadConfig())
    } catch (error) {
      if (!(error instanceof DataDirLockedError)) throw error
      console.error(
        `sage-memory: the embedded store in ${error.dir} is in use by the running Sage (PID ${error.pid}), which applied its ` +
        'migrations when it started, so there is nothing to do; to apply a newer version\'s, restart that service (it migrates at start)'
      )
      return 1
    }
    try {
      const applied = await applyMigrations(db)
      console.log(applied.length ? `applied: ${applied.join(', ')}` : 'already up to date')
    } finally {
      await db.close()
    }
    return 0
  }
}
