import { createHash } from 'node:crypto'
import { access } from 'node:fs/promises'
import { dirname, isAbsolute, join } from 'node:path'
import { LRUCache } from 'lru-cache'
import { NAMESPACE_CHARS, NAMESPACE_MAX_LENGTH, NAMESPACE_PATTERN, NAMESPACE_RULE } from '../memory/memory-schemas.js'
import { DEFAULT_NAMESPACE } from '../memory/memory-service.js'

/**
 * Which namespace a hook call (or an imported transcript) belongs to, from the agent's working directory:
 * 1. the longest HOOK_NAMESPACE_MAP prefix that contains `cwd`, else
 * 2. the name of the nearest folder at or above `cwd` that holds `.git`, when that folder exists on this machine, else
 * 3. the last segment of `cwd`;
 * sanitised to the namespace charset. No `cwd` at all is the default namespace.
 */
export type HookNamespace = (cwd: string | undefined) => Promise<string>

// Re-exported for the hook's route, which checks ?namespace= with it.
export { NAMESPACE_PATTERN }

const OUTSIDE_NAMESPACE_CHARS = new RegExp(`[^${NAMESPACE_CHARS}]+`, 'g')

const CACHE_SIZE = 1_000
/** A repository created after the first call is noticed within this. */
const CACHE_TTL_MS = 60_000
/** Deeper than any real project path; bounds the walk for absurd input. */
const MAX_WALK_DEPTH = 64

export interface NamespaceMapping {
  prefix: string
  namespace: string
}

/**
 * Parses "/src/billing=billing,/src/web=web" (commas or semicolons between pairs). Throws on a pair without
 * "=" or a namespace outside the charset, so a typo in the configuration is found at start, not per request.
 */
export function parseNamespaceMap(text: string | undefined): NamespaceMapping[] {
  if (text === undefined || text.trim() === '') return []
  const mappings: NamespaceMapping[] = []
  for (const pair of text.split(/[,;]/)) {
    if (pair.trim() === '') continue
    const at = pair.lastIndexOf('=')
    const prefix = trimSeparators(pair.slice(0, at).trim())
    const namespace = pair.slice(at + 1).trim()
    if (at < 0 || prefix === '') throw new Error(`HOOK_NAMESPACE_MAP: "${pair.trim()}" is not PATH=NAMESPACE`)
    if (!NAMESPACE_PATTERN.test(namespace)) {
      throw new Error(`HOOK_NAMESPACE_MAP: namespace "${namespace}" must be ${NAMESPACE_RULE}`)
    }
    mappings.push({ prefix, namespace })
  }
  // Longest first, so /src/billing/api wins over /src/billing.
  return mappings.sort((a, b) => b.prefix.length - a.prefix.length)
}

/** A folder name made into a namespace: accents folded, other characters to "-", never empty. */
export function sanitizeNamespace(name: string): string {
  const folded = name
    .normalize('NFKD')
    .replace(/\p{M}+/gu, '')
    .replace(OUTSIDE_NAMESPACE_CHARS, '-')
    .replace(/^[-.]+|[-.]+$/g, '')
    .slice(0, NAMESPACE_MAX_LENGTH)
  if (folded !== '') return folded
  if (name.trim() === '') return DEFAULT_NAMESPACE
  // A name with no ASCII letters at all (e.g. Cyrillic) still gets a namespace of its own.
  return `project-${createHash('sha256').update(name).digest('hex').slice(0, 10)}`
}

/** The namespace resolver for a HOOK_NAMESPACE_MAP value; caches each cwd's answer for a minute. */
export function createHookNamespace(mapText: string | undefined): HookNamespace {
  const mappings = parseNamespaceMap(mapText)
  const cache = new LRUCache<string, string>({ max: CACHE_SIZE, ttl: CACHE_TTL_MS })

  return async (cwd) => {
    if (cwd === undefined || cwd.trim() === '') return DEFAULT_NAMESPACE
    const cached = cache.get(cwd)
    if (cached !== undefined) return cached
    const mapped = mappedNamespace(mappings, cwd)
    const namespace = mapped ?? sanitizeNamespace(lastSegment((await repositoryRoot(cwd)) ?? cwd))
    cache.set(cwd, namespace)
    return namespace
  }
}

function mappedNamespace(mappings: readonly NamespaceMapping[], cwd: string): string | undefined {
  const path = trimSeparators(cwd)
  for (const { prefix, namespace } of mappings) {
    if (path === prefix || path.startsWith(`${prefix}/`) || path.startsWith(`${prefix}\\`)) return namespace
  }
  return undefined
}

/** The nearest folder at or above `cwd` holding `.git` (a folder, or a file in worktrees and submodules). */
async function repositoryRoot(cwd: string): Promise<string | undefined> {
  if (!isAbsolute(cwd)) return undefined
  let dir = cwd
  for (let depth = 0; depth < MAX_WALK_DEPTH; depth++) {
    const found = await access(join(dir, '.git')).then(() => true, () => false)
    if (found) return dir
    const parent = dirname(dir)
    if (parent === dir) return undefined
    dir = parent
  }
  return undefined
}

function lastSegment(path: string): string {
  return trimSeparators(path).split(/[\\/]/).pop() ?? ''
}

function trimSeparators(path: string): string {
  return path.length > 1 ? path.replace(/[\\/]+$/, '') : path
}
