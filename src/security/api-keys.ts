import { createHash, timingSafeEqual } from 'node:crypto'
import { readFile, stat } from 'node:fs/promises'
import { NAMESPACE_CHARS, NAMESPACE_MAX_LENGTH } from '../memory/memory-schemas.js'

/**
 * API keys and their scopes.
 *
 * Format (SAGE_API_KEYS, and SAGE_API_KEYS_FILE one or more a line): entries separated by `;` or new lines,
 *
 *     name:secret=scope[,scope…][:delete]
 *
 * - `name`: 1-64 of [A-Za-z0-9._-]; what logs and the delete audit show. The secret never appears anywhere.
 * - `secret`: 16-512 printable ASCII characters without spaces or `;` (`openssl rand -hex 32` makes a good one).
 *   It may contain `:` and `=`: the name ends at the first `:`, the scopes start after the last `=`.
 * - `scope`: `*` (every namespace), an exact namespace (`billing`), or a prefix ending in `*` (`team-a/*`
 *   is every namespace that starts with `team-a/`, not `team-a` itself).
 * - `:delete` at the end lets the key delete within its scopes; without it DELETE answers 403.
 * Blank entries and lines starting with `#` are skipped.
 */
export interface ApiKey {
  readonly name: string
  /** SHA-256 of the secret; the secret itself is not kept. */
  readonly hash: Buffer
  readonly scopes: readonly string[]
  readonly canDelete: boolean
}

export class ApiKeyFormatError extends Error {
  override name = 'ApiKeyFormatError'
}

export const KEY_FORMAT = 'name:secret=scope[,scope…][:delete]'
const NAME = /^[A-Za-z0-9._-]{1,64}$/
// Printable ASCII except space and ';' (the entry separator).
const SECRET = /^[\x21-\x3a\x3c-\x7e]{16,512}$/
// `*`, or a namespace, or a namespace prefix ending in `*`.
const SCOPE = new RegExp(`^(?:\\*|[${NAMESPACE_CHARS}]{1,${NAMESPACE_MAX_LENGTH}}\\*?)$`)
const DELETE_SUFFIX = ':delete'

const sha256 = (text: string) => createHash('sha256').update(text, 'utf8').digest()

/** Parses the entries of `text`; an error names `source` and the line, never the secret. */
export function parseApiKeys(text: string, source: string): ApiKey[] {
  const keys: ApiKey[] = []
  const lines = text.split(/\r?\n/)
  for (const [lineIndex, line] of lines.entries()) {
    const entries = line.split(';')
    for (const [entryIndex, raw] of entries.entries()) {
      const entry = raw.trim()
      if (entry === '' || entry.startsWith('#')) continue
      const where = `${source}${lines.length > 1 ? ` line ${lineIndex + 1}` : ''}${entries.length > 1 ? ` entry ${entryIndex + 1}` : ''}`
      keys.push(parseEntry(entry, where))
    }
  }
  checkUnique(keys, source)
  return keys
}

/** A name says who deleted what, and a secret must say which key it is: both are unique. */
function checkUnique(keys: readonly ApiKey[], source: string): void {
  const names = new Set<string>()
  const hashes = new Set<string>()
  for (const key of keys) {
    if (names.has(key.name)) throw new ApiKeyFormatError(`${source}: two keys are named "${key.name}"`)
    if (hashes.has(key.hash.toString('hex'))) throw new ApiKeyFormatError(`${source}: key "${key.name}" has the same secret as another key`)
    names.add(key.name)
    hashes.add(key.hash.toString('hex'))
  }
}

function parseEntry(entry: string, where: string): ApiKey {
  const colon = entry.indexOf(':')
  const equals = entry.lastIndexOf('=')
  if (colon < 1 || equals < colon) throw new ApiKeyFormatError(`${where}: expected ${KEY_FORMAT}`)
  const name = entry.slice(0, colon)
  if (!NAME.test(name)) throw new ApiKeyFormatError(`${where}: a key name is 1-64 of [A-Za-z0-9._-]; expected ${KEY_FORMAT}`)
  const secret = entry.slice(colon + 1, equals)
  if (!SECRET.test(secret)) {
    throw new ApiKeyFormatError(
      `${where}: the secret of key "${name}" must be 16-512 printable characters without spaces or ";" (make one with: openssl rand -hex 32)`
    )
  }
  let scopeList = entry.slice(equals + 1)
  const canDelete = scopeList.endsWith(DELETE_SUFFIX)
  if (canDelete) scopeList = scopeList.slice(0, -DELETE_SUFFIX.length)
  const scopes = scopeList.split(',')
  for (const scope of scopes) {
    if (!SCOPE.test(scope)) {
      throw new ApiKeyFormatError(`${where}: key "${name}" has scope "${scope}"; a scope is *, a namespace, or a prefix ending in * such as team-a/*`)
    }
  }
  return { name, hash: sha256(secret), scopes, canDelete }
}

/** Whether one of `scopes` covers `namespace`. */
export function scopesAllow(scopes: readonly string[], namespace: string): boolean {
  return scopes.some((scope) => (scope.endsWith('*') ? namespace.startsWith(scope.slice(0, -1)) : namespace === scope))
}

/** The token of an `Authorization: Bearer <token>` header, or undefined. */
export function bearerToken(authorization: string | undefined): string | undefined {
  const match = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(authorization ?? '')
  return match?.[1]
}

/**
 * The key whose secret is `token`. Both sides are hashed to equal length and every key is compared,
 * so the time taken says nothing about how close a guess was or which key matched.
 */
export function findKey(keys: readonly ApiKey[], token: string): ApiKey | undefined {
  const presented = sha256(token)
  let found: ApiKey | undefined
  for (const key of keys) {
    if (timingSafeEqual(key.hash, presented) && found === undefined) found = key
  }
  return found
}

/** Constant-time check of a bearer header against one secret (the metrics token). */
export function bearerMatches(authorization: string | undefined, secret: string): boolean {
  return timingSafeEqual(sha256(bearerToken(authorization) ?? ''), sha256(secret))
}

export interface ApiKeySources {
  /** SAGE_API_KEYS */
  inline?: string
  /** SAGE_API_KEYS_FILE */
  file?: string
}

/** Keys are required as soon as either source is configured, even when the file holds none (all calls are then 401). */
export function keysConfigured(sources: ApiKeySources): boolean {
  return Boolean(sources.inline?.trim()) || Boolean(sources.file)
}

export interface LoadedKeys {
  keys: ApiKey[]
  /** Set when the key file can be read by every user of the machine. */
  warning?: string
}

/** Reads both sources; throws ApiKeyFormatError (or the file's read error) without touching the secrets in the message. */
export async function loadApiKeys(sources: ApiKeySources): Promise<LoadedKeys> {
  const keys = sources.inline?.trim() ? parseApiKeys(sources.inline, 'SAGE_API_KEYS') : []
  let warning: string | undefined
  if (sources.file) {
    let text: string
    try {
      text = await readFile(sources.file, 'utf8')
      if (((await stat(sources.file)).mode & 0o004) !== 0) warning = `${sources.file} is readable by every user; chmod 600 it`
    } catch (error) {
      throw new ApiKeyFormatError(`SAGE_API_KEYS_FILE ${sources.file} cannot be read: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`)
    }
    keys.push(...parseApiKeys(text, sources.file))
    checkUnique(keys, 'SAGE_API_KEYS and SAGE_API_KEYS_FILE')
  }
  return { keys, warning }
}
