import { resolve } from 'node:path'
import { dataDir, loadConfig } from '../config.js'
import { createDatabase } from '../db/create-database.js'
import { dataDirHolder } from '../db/data-dir-lock.js'
import { migrate } from '../db/migrate.js'
import { createEmbedder } from '../embedder/create-embedder.js'
import { rebindEmbedder } from '../db/embedder-binding.js'
import { sageUrl } from '../sage-url.js'
import type { Command } from './command.js'
import { parseCommandArgs } from './parse-command-args.js'

const USAGE = `[--url http://127.0.0.1:8765] [--key-env SAGE_API_KEY]
  With the service stopped: switches the store to the configured EMBEDDING_* embedder. With it running (the embedded
  store's lock held, or --url given): asks it to re-embed every memory with its own embedder while it serves`

/** Asks the running service to clear its vectors and re-embed every memory in the background. */
async function reembedThroughService(url: string, apiKey: string | undefined, holder: number | undefined): Promise<number> {
  const running = holder === undefined ? `the Sage at ${url}` : `the running Sage (PID ${holder}) at ${url}`
  let res: Response
  try {
    res = await fetch(sageUrl(url, '/v1/admin/reembed'), { method: 'POST', headers: apiKey ? { authorization: `Bearer ${apiKey}` } : {}, signal: AbortSignal.timeout(600_000) })
  } catch (error) {
    throw new Error(
      `${running} does not answer (${((error as Error).cause as Error | undefined)?.message ?? (error as Error).message}): ` +
      'point --url (or SAGE_URL) at it, or stop it to re-embed the store alone',
      { cause: error }
    )
  }
  const body = (await res.json().catch(() => ({}))) as { embedder?: string; cleared?: number; message?: string }
  if (!res.ok) throw new Error(`${running} refused to re-embed: ${res.status} ${body.message ?? ''}`.trim())
  console.log(
    `${running} cleared ${body.cleared} vectors and re-embeds every memory with ${body.embedder} in the background; saves and recalls go on ` +
    'meanwhile (by full text until a memory has its vector back). To switch to another embedder instead: stop it, run ' +
    '`sage-memory reembed` with the new EMBEDDING_* settings, and start it with them'
  )
  return 0
}

export const reembed: Command = {
  summary: 'switch the store to the configured embedder, or have the running service re-embed every memory while it serves',
  usage: USAGE,
  async run(args) {
    const { values } = parseCommandArgs(args, { url: { type: 'string' }, 'key-env': { type: 'string', default: 'SAGE_API_KEY' } })
    const config = loadConfig()
    const url = values.url ?? process.env.SAGE_URL ?? 'http://127.0.0.1:8765'
    // The embedded store has one owner: while the service holds it, only the service may touch it.
    const holder = config.DATABASE_URL || config.SAGE_DATA_DIR === ':memory:' ? undefined : await dataDirHolder(resolve(dataDir(config)))
    if (values.url !== undefined || holder !== undefined) return reembedThroughService(url, process.env[values['key-env']] || undefined, holder)

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
