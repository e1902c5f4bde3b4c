import { homedir } from 'node:os'
import { join } from 'node:path'

/** Sage's folder in the user's data home ($XDG_DATA_HOME, else ~/.local/share): what the commands keep per user. */
export function userDataDir(env: Record<string, string | undefined> = process.env, home = homedir()): string {
  const base = env.XDG_DATA_HOME && env.XDG_DATA_HOME.startsWith('/') ? env.XDG_DATA_HOME : join(home, '.local', 'share')
  return join(base, 'sage-memory')
}
