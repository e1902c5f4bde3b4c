import { validationError } from '../errors.js'
import { LIMITS } from './memory-schemas.js'

// C0 controls other than tab, newline and carriage return, and DEL: Postgres refuses NUL, the rest is noise.
// eslint-disable-next-line no-control-regex -- matching control characters is the point
const CONTROL_CHARACTERS = /[\u0000-\u0008\u000B\u000C\u000E-\u001F\u007F]/g

/** The one normal form of stored text: well-formed UTF-16, no control characters, NFC, trimmed. */
export function normalizeText(text: string): string {
  return text.toWellFormed().replace(CONTROL_CHARACTERS, '').normalize('NFC').trim()
}

export function codePointLength(text: string): number {
  let length = 0
  for (const _ of text) length++
  return length
}

/** Normalised content, or a 400 naming `field` when nothing is left or it is too long. */
export function normalizeContent(text: string, field: string): string {
  const content = normalizeText(text)
  if (content.length === 0) throw validationError(`${field} must be a non-empty string (after removing control characters and whitespace)`)
  if (content.length > LIMITS.contentChars && codePointLength(content) > LIMITS.contentChars) {
    throw validationError(`${field} must be at most ${LIMITS.contentChars} characters`)
  }
  return content
}

/** Years 1 to 9999 in UTC: what both JSON and Postgres write the same way; beyond them is a 400, not a database error. */
export function normalizeTimestamp(value: string, field: string): Date {
  const date = new Date(value)
  const year = date.getUTCFullYear()
  if (Number.isNaN(date.getTime()) || year < 1 || year > 9999) throw validationError(`${field} must be a date-time from 0001-01-01 to 9999-12-31 (UTC)`)
  return date
}

/** Tags trimmed, normalised and de-duplicated, keeping their first order. */
export function normalizeTags(tags: readonly string[] | undefined, field: string): string[] {
  const seen = new Set<string>()
  for (const [index, tag] of (tags ?? []).entries()) {
    const clean = normalizeText(tag)
    if (clean.length === 0) throw validationError(`${field}[${index}] must be a non-empty string`)
    seen.add(clean)
  }
  return [...seen]
}

/**
 * Metadata made safe for jsonb: strings (keys too) normalised, bounded depth and size.
 * jsonb refuses \u0000 in strings, so a NUL must never reach it.
 */
export function normalizeMetadata(metadata: Record<string, unknown> | undefined, field: string): Record<string, unknown> {
  if (metadata === undefined) return {}
  const clean = normalizeJson(metadata, field, 1) as Record<string, unknown>
  const bytes = Buffer.byteLength(JSON.stringify(clean))
  if (bytes > LIMITS.metadataBytes) throw validationError(`${field} must be at most ${LIMITS.metadataBytes} bytes serialized (got ${bytes})`)
  return clean
}

function normalizeJson(value: unknown, path: string, depth: number): unknown {
  if (typeof value === 'string') return value.toWellFormed().replace(CONTROL_CHARACTERS, '')
  if (value === null || typeof value === 'boolean') return value
  if (typeof value === 'number') return Number.isFinite(value) ? value : null
  if (depth > LIMITS.metadataDepth) throw validationError(`${path} nests deeper than ${LIMITS.metadataDepth} levels`)
  if (Array.isArray(value)) return value.map((item, index) => normalizeJson(item, `${path}[${index}]`, depth + 1))
  if (typeof value === 'object') {
    // A null-prototype object: no key, however named, can reach Object.prototype.
    const out: Record<string, unknown> = Object.create(null)
    for (const [key, item] of Object.entries(value)) {
      const cleanKey = key.toWellFormed().replace(CONTROL_CHARACTERS, '')
      out[cleanKey] = normalizeJson(item, `${path}.${cleanKey}`, depth + 1)
    }
    return out
  }
  throw validationError(`${path} holds a value that is not JSON`)
}
