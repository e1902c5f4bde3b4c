import type { Config } from '../config.js'
import { keysConfigured } from './api-keys.js'

export const LOOPBACK = /^(127\.\d+\.\d+\.\d+|::1|localhost|\[::1\])$/i

/**
 * Refuses to serve every memory to a network with no keys: throws a message that says how to add one,
 * unless SAGE_ALLOW_OPEN=true. Answers a warning to log when the operator did say so.
 */
export function checkExposure(config: Config): string | undefined {
  if (LOOPBACK.test(config.HOST) || keysConfigured({ inline: config.SAGE_API_KEYS, file: config.SAGE_API_KEYS_FILE })) return undefined
  if (config.SAGE_ALLOW_OPEN) {
    return `serving ${config.HOST} with no API keys because SAGE_ALLOW_OPEN=true: anyone who reaches this port can read and delete every memory`
  }
  throw new Error(
    `refusing to serve ${config.HOST} (not a loopback address) with no API keys: anyone who reaches it could read and delete every memory.\n` +
      `Add a key, for example SAGE_API_KEYS="me:$(openssl rand -hex 32)=*:delete" (format name:secret=namespace-patterns[:delete], ` +
      `several separated by ";"), or SAGE_API_KEYS_FILE=/path/to/keys with one such entry a line.\n` +
      'Or bind HOST=127.0.0.1, or set SAGE_ALLOW_OPEN=true if something in front of Sage already checks who calls it.'
  )
}
