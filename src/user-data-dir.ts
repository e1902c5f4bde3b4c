import { homedir } from 'node:os'
import { join } from 'node:path'

/**
 * Sage's folder in the user's data home, whatever folder a command runs in: the embedded store (the default
 * SAGE_DATA_DIR), models, settings backups and the user service all live here. $XDG_DATA_HOME/sage-memory, else
 * ~/.local/share/sage-memory; on macOS ~/Library/Application Support/sage-memory.
 */
export function userDataDir(env: Record<string, string | undefined> = process.env, home = homedir(), platform: NodeJS.Platform = process.platform): string {
  if (platform === 'darwin') return join(home, 'Library', 'Application Support', 'sage-memory')
  // XDG says a relative value is invalid and must be ignored.
  const base = env.XDG_DATA_HOME && env.XDG_DATA_HOME.startsWith('/') ? env.XDG_DATA_HOME : join(home, '.local', 'share')
  return join(base, 'sage-memory')
}
