/**
 * Strips credentials from text before it is stored or embedded: every secret becomes `[REDACTED:<kind>]`
 * and `<private>…</private>` spans are dropped whole.
 *
 * Decisions:
 * - `<private>` is case-insensitive and may span lines; an unclosed `<private>` drops everything after it,
 *   because the writer asked for the rest to stay private and a missing close tag should not leak it.
 *   A stray `</private>` without an opening tag is kept as text.
 * - An unclosed `-----BEGIN … PRIVATE KEY-----` is redacted to the end of the text for the same reason.
 * - Idempotent: markers contain no secret shape and no value class admits `[`, so a second pass finds nothing.
 *
 * Why not secretlint (@secretlint/core 12 + preset-recommend 12, evaluated for this job):
 * - `lintSource` is async and sets up all 25 rules per call: about 300 µs per 500-character string even in a
 *   loop that never yields (20 KB: about 340 µs), against a budget of well under 100 µs.
 * - @secretlint/profiler keeps every performance mark (56 per call) in a process-wide array that is never
 *   cleared and is searched linearly. In a loop that yields to the event loop, as a server does, calls 0–499
 *   averaged 11.6 ms and calls 1,500–1,999 43 ms (`node --import tsx bench/redact-secrets.bench.ts --secretlint`).
 * - With its defaults it misses AWS access key ids (off by default), Google API keys, Stripe keys, JWTs,
 *   Azure account keys, Bearer tokens, sk-proj- keys without the `T3BlbkFJ` infix and NAME=value
 *   assignments, and flags a whole database URL rather than its password.
 * So the shapes live in ./secret-patterns.ts, one commented row each, with prefixes and lengths taken from
 * the vendors' formats and secretlint's rules. This module, with each row run only over text holding its needles:
 * 3 µs for 500 characters of prose, 5-8 of code, 12-15 with two secrets; 170-240 for 20 KB of code, 400-480
 * with ten secrets (bench/redact-secrets.bench.ts).
 */
import { secretPatterns, type SecretKind, type SecretPattern } from './secret-patterns.js'

export type RedactionKind = 'private' | SecretKind

/** Every kind redactSecrets can report, for metrics labels; `private` counts dropped `<private>` spans. */
export const REDACTION_KINDS: readonly RedactionKind[] = ['private', ...new Set(secretPatterns.map((pattern) => pattern.kind))]

export interface RedactionResult {
  text: string
  /** One entry per kind found, with how many were redacted; empty when the text came back unchanged. */
  redactions: Array<{ kind: RedactionKind; count: number }>
}

/** `<private>` to its closing tag, or to the end of the text when there is none. */
const PRIVATE_SPAN = /<private\s*>[\s\S]*?(?:<\/private\s*>|$)/gi

/** Redacts credentials in `text` and drops its `<private>` spans. Pure, synchronous, and never throws. */
export function redactSecrets(text: string): RedactionResult {
  const counts = new Map<RedactionKind, number>()
  let redacted = text
  if (PRIVATE_TAG.test(text)) redacted = dropPrivateSpans(text, counts)
  const found = needlesIn(redacted)
  // Every assignment holds one; a single-character search is cheap, unlike finding each `:` in the scan.
  const separated = redacted.includes(':') || redacted.includes('=')
  for (const [index, pattern] of secretPatterns.entries()) {
    if (!mayMatch(pattern, found, separated)) continue
    const next = redactPattern(redacted, pattern, counts)
    // A marker holds needles of later rows (`[REDACTED:bearer-token]`): from here on every row runs, as it is rare.
    if (next !== redacted) {
      redacted = next
      for (const later of secretPatterns.slice(index + 1)) redacted = redactPattern(redacted, later, counts)
      break
    }
  }
  return { text: redacted, redactions: Array.from(counts, ([kind, count]) => ({ kind, count })) }
}

/** Every row over the whole text, no needle gate: what redactSecrets must always equal (its tests hold it to this). */
export function redactSecretsEveryRow(text: string): RedactionResult {
  const counts = new Map<RedactionKind, number>()
  let redacted = dropPrivateSpans(text, counts)
  for (const pattern of secretPatterns) redacted = redactPattern(redacted, pattern, counts)
  return { text: redacted, redactions: Array.from(counts, ([kind, count]) => ({ kind, count })) }
}

/**
 * Needles of every row (SecretPattern.needles): one scan of the text finds which are present, and a row none of
 * whose needles is present is not run. Running every row over every text was most of redaction's cost; the
 * scan costs less than the rows it skips, except over long text full of secrets (bench/redact-secrets.bench.ts).
 */
const NEEDLES = [...new Set(secretPatterns.flatMap((pattern) => pattern.needles))].sort((a, b) => b.length - a.length)
/** Longest first, so at a position the longest needle there is the match; the shorter ones there are its prefixes. */
const NEEDLE_SCAN = new RegExp(NEEDLES.map((needle) => needle.replace(/[.*+?^${}()|[\]\\/-]/g, '\\$&')).join('|'), 'g')
const PREFIXES = new Map(NEEDLES.map((needle) => [needle, NEEDLES.filter((other) => needle.startsWith(other))]))
const PRIVATE_TAG = /<private/i

/** The needles in `text`. */
function needlesIn(text: string): Set<string> {
  const found = new Set<string>()
  NEEDLE_SCAN.lastIndex = 0
  for (let match = NEEDLE_SCAN.exec(text); match !== null; match = NEEDLE_SCAN.exec(text)) {
    for (const needle of PREFIXES.get(match[0]) ?? []) found.add(needle)
    // One step on, not past the match: a needle that starts inside this one is found too.
    NEEDLE_SCAN.lastIndex = match.index + 1
  }
  return found
}

/** Whether `pattern` can match text holding `found` (and a separator, when `separated`): false only when no match is possible. */
function mayMatch(pattern: SecretPattern, found: ReadonlySet<string>, separated: boolean): boolean {
  if (pattern.needsSeparator && !separated) return false
  return pattern.needles.length === 0 || pattern.needles.some((needle) => found.has(needle))
}

function dropPrivateSpans(text: string, counts: Map<RedactionKind, number>): string {
  let current = text
  // Dropping a span can join `<priv` and `ate>` into a new tag, so repeat until none is left (each round shortens the text).
  for (;;) {
    let dropped = 0
    const next = current.replace(PRIVATE_SPAN, () => {
      dropped++
      return ''
    })
    if (dropped === 0) return current
    counts.set('private', (counts.get('private') ?? 0) + dropped)
    current = next
  }
}

function redactPattern(text: string, { kind, regex, isSecret }: SecretPattern, counts: Map<RedactionKind, number>): string {
  const marker = `[REDACTED:${kind}]`
  let redacted = ''
  let copiedUpTo = 0
  let found = 0
  regex.lastIndex = 0
  for (let match = regex.exec(text); match !== null; match = regex.exec(text)) {
    const whole = match[0]
    const secret = match.groups?.secret ?? whole
    if (secret === '') continue
    if (isSecret !== undefined && !isSecret({ secret, groups: match.groups ?? {}, offset: match.index, text })) continue
    const end = match.index + whole.length
    // The secret ends the match (trailing context is lookahead), so what precedes it in the match is kept.
    redacted += text.slice(copiedUpTo, end - secret.length) + marker
    copiedUpTo = end
    found++
  }
  if (found === 0) return text
  counts.set(kind, (counts.get(kind) ?? 0) + found)
  return redacted + text.slice(copiedUpTo)
}
