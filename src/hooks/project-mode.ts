import { access, readFile } from 'node:fs/promises'
import { dirname, isAbsolute, join } from 'node:path'
import { LRUCache } from 'lru-cache'

/**
 * A project's own say in what Sage does with it, in `.sage.json` at its top (or any folder between the agent's
 * working directory and the repository's top; the nearest wins):
 *
 *     { "mode": "off" }         nothing saved, nothing injected: the hook answers {} at once
 *     { "mode": "save-only" }   sessions are saved, nothing is injected into them
 *     { "mode": "on" }          the default, as if there were no file
 *
 * A file that cannot be read as one of these counts as "off": a typo in an opt-out must not leak the project.
 */
export const PROJECT_MODES = ['on', 'save-only', 'off'] as const
export type ProjectMode = (typeof PROJECT_MODES)[number]
export const PROJECT_FILE = '.sage.json'

export interface ProjectSetting {
  mode: ProjectMode
  /** The file that says so; undefined when no file applies. */
  path?: string
  /** Why the file counts as "off" although it does not say so. */
  problem?: string
}

const MAX_WALK_DEPTH = 64
const CACHE_SIZE = 1_000
/** An edited file is honoured within this. */
const CACHE_TTL_MS = 2_000

const exists = (path: string) => access(path).then(() => true, () => false)

/** Reads one `.sage.json`. */
export async function readProjectFile(path: string): Promise<ProjectSetting> {
  let parsed: unknown
  try {
    parsed = JSON.parse((await readFile(path, 'utf8')).replace(/^\uFEFF/, ''))
  } catch (error) {
    return { mode: 'off', path, problem: `${path} is not readable JSON (${(error as Error).message}); counted as "off"` }
  }
  const mode = (parsed as { mode?: unknown } | null)?.mode
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed) || !(PROJECT_MODES as readonly unknown[]).includes(mode)) {
    return { mode: 'off', path, problem: `${path} must be {"mode": "on" | "save-only" | "off"}; counted as "off"` }
  }
  return { mode: mode as ProjectMode, path }
}

/** The setting that applies to `cwd`: the nearest `.sage.json` from `cwd` up to the folder holding `.git`. */
export async function findProjectSetting(cwd: string | undefined): Promise<ProjectSetting> {
  if (cwd === undefined || !isAbsolute(cwd)) return { mode: 'on' }
  let dir = cwd
  for (let depth = 0; depth < MAX_WALK_DEPTH; depth++) {
    const file = join(dir, PROJECT_FILE)
    if (await exists(file)) return readProjectFile(file)
    if (await exists(join(dir, '.git'))) return { mode: 'on' }
    const parent = dirname(dir)
    if (parent === dir) return { mode: 'on' }
    dir = parent
  }
  return { mode: 'on' }
}

/** The hook's view: the mode for a cwd, each answer kept for two seconds. */
export function createProjectMode(): (cwd: string | undefined) => Promise<ProjectMode> {
  const cache = new LRUCache<string, ProjectMode>({ max: CACHE_SIZE, ttl: CACHE_TTL_MS })
  return async (cwd) => {
    if (cwd === undefined) return 'on'
    const cached = cache.get(cwd)
    if (cached !== undefined) return cached
    const { mode } = await findProjectSetting(cwd)
    cache.set(cwd, mode)
    return mode
  }
}
