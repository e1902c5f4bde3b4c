import { Redis } from 'ioredis'
import { loadConfig } from '../config.js'
import { listDeadLetters, queueStatus, replayDeadLetters } from '../queue/queue-admin.js'
import { queueKeys } from '../queue/queue-keys.js'
import { redisOptions } from '../redis/redis-clients.js'
import type { Command } from './command.js'
import { parseCommandArgs, UsageError } from './parse-command-args.js'

const USAGE = `status [--json]                   depth, pending, oldest entry's age, live consumers, dead letters
dead-letters [--limit N] [--json]  saves that failed QUEUE_MAX_ATTEMPTS times, with their errors
replay <dead-letter-id>... | --all put dead letters back on the queue (memories keep their ids: none is written twice)
  reads REDIS_URL and REDIS_KEY_PREFIX from the environment, as the service does`

const preview = (text: unknown) => {
  const flat = String(text ?? '').replace(/\s+/g, ' ')
  return flat.length > 80 ? `${flat.slice(0, 79)}…` : flat
}

/** `sage-memory queue status|dead-letters|replay`: the operator's view of the asynchronous save queue. */
export const queue: Command = {
  summary: 'inspect the asynchronous save queue in Redis, list its dead letters and replay them',
  usage: USAGE,
  async run(args) {
    const { values, positionals } = parseCommandArgs(args, {
      json: { type: 'boolean', default: false },
      limit: { type: 'string', default: '20' },
      all: { type: 'boolean', default: false }
    }, true)
    const [action, ...rest] = positionals
    if (action !== 'status' && action !== 'dead-letters' && action !== 'replay') {
      throw new UsageError(action === undefined ? 'name the action: status, dead-letters or replay' : `unknown action "${action}"; use status, dead-letters or replay`)
    }
    const config = loadConfig()
    if (!config.REDIS_URL) throw new Error('REDIS_URL is not set: without Redis every save is synchronous and there is no queue')
    const keys = queueKeys(config.REDIS_KEY_PREFIX)
    const redis = new Redis(config.REDIS_URL, { ...redisOptions(config.REDIS_COMMAND_TIMEOUT_MS, 'sage:queue-command'), retryStrategy: () => null })
    redis.on('error', () => undefined)
    try {
      await redis.connect()
      switch (action) {
        case 'status': {
          const status = await queueStatus(redis, keys, { consumers: true })
          if (values.json) console.log(JSON.stringify(status, null, 2))
          else {
            console.log(`stream        ${status.stream} (group ${status.group})`)
            console.log(`depth         ${status.depth} queued, not yet written`)
            console.log(`pending       ${status.pending} handed to a consumer, not yet acknowledged`)
            console.log(`oldest        ${(status.oldest_age_ms / 1000).toFixed(1)} s`)
            console.log(`dead letters  ${status.dead_letters}${status.dead_letters > 0 ? ' (sage-memory queue dead-letters)' : ''}`)
            console.log(`consumers     ${status.consumers.length}`)
            for (const c of status.consumers) {
              const seen = c.seen_ms === null ? 'no heartbeat' : `seen ${(c.seen_ms / 1000).toFixed(1)} s ago`
              console.log(`  ${c.name}  pending ${c.pending}  idle ${(c.idle_ms / 1000).toFixed(1)} s  ${seen}`)
            }
          }
          return 0
        }
        case 'dead-letters': {
          const limit = Number(values.limit)
          if (!Number.isInteger(limit) || limit < 1) throw new Error('--limit must be a positive integer')
          const letters = await listDeadLetters(redis, keys, limit)
          if (values.json) console.log(JSON.stringify(letters, null, 2))
          else if (letters.length === 0) console.log('no dead letters')
          else {
            for (const letter of letters) {
              console.log(`${letter.id}  failed ${letter.failed_at} after ${letter.attempts} attempt(s): ${letter.error}`)
              const memories = (letter.save as { memories?: Array<{ id?: string; namespace?: string; content?: string }> } | null)?.memories ?? []
              for (const m of memories) console.log(`  ${m.id}  ${m.namespace}  ${preview(m.content)}`)
            }
          }
          return 0
        }
        case 'replay': {
          if (values.all === rest.length > 0) throw new Error('give dead-letter ids, or --all (not both)')
          const moved = await replayDeadLetters(redis, keys, values.all ? 'all' : rest)
          console.log(`replayed ${moved} dead letter(s) onto ${keys.stream}`)
          return 0
        }
      }
    } finally {
      redis.disconnect()
    }
  }
}
