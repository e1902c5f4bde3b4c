import { LexicalEmbedder } from '../embedder/lexical-embedder.js'
import { redactSecrets, type RedactionResult } from '../security/redact-secrets.js'
import { tokenize } from '../text/tokenize.js'
import { LIMITS } from './memory-schemas.js'
import { tsvectorLiteral } from './memory-store.js'
import { codePointLength, normalizeText } from './normalize.js'

const SAFE_TERM = /^[\p{Ll}\p{Lo}\p{Nd}]+$/u

/** What to do with one text: the same pure steps run on the event loop for short texts and in a worker for long ones. */
export interface ContentTask {
  text: string
  /** Normalise it and check it against the content limit (a save's content), or take it as stored (the save queue's). */
  normalize: boolean
  redact: boolean
  /** Also compute the built-in lexical embedder's vector of this dimension. */
  lexicalDimension?: number
  /** Also answer the terms themselves (an embedder that takes them); costly to hand back from a worker. */
  keepTerms?: boolean
}

export interface AnalyzedContent {
  /** 'empty' or 'too_long': the caller's text, before redaction, is not a valid content. */
  problem?: 'empty' | 'too_long'
  content: string
  redactions: RedactionResult['redactions']
  /** Space-separated full-text terms (NewMemory.search_terms) and the tsvector literal they make. */
  searchTerms: string
  tsvector: string
  terms?: string[]
  vector?: number[]
  /** How long computing `vector` took, for the embedding-duration metric. */
  embedMs?: number
}

export function safeTerms(terms: readonly string[]): string[] {
  return terms.filter((term) => SAFE_TERM.test(term))
}

const lexicalEmbedders = new Map<number, LexicalEmbedder>()

/**
 * Normalises, redacts, splits and (for the lexical embedder) embeds one text. The content limit applies to what the
 * caller sent: redaction markers may take the stored text past it, and never turn a valid save into a 400.
 */
export function analyzeContent(task: ContentTask): AnalyzedContent {
  let content = task.normalize ? normalizeText(task.text) : task.text
  const none = { content, redactions: [], searchTerms: '', tsvector: '' }
  if (task.normalize && content.length === 0) return { ...none, problem: 'empty' }
  if (task.normalize && content.length > LIMITS.contentChars && codePointLength(content) > LIMITS.contentChars) return { ...none, problem: 'too_long' }
  let redactions: RedactionResult['redactions'] = []
  if (task.redact) {
    const redacted = redactSecrets(content)
    redactions = redacted.redactions
    if (redactions.length > 0) content = normalizeText(redacted.text)
    // Nothing but <private> spans: nothing is left to save.
    if (content.length === 0) return { ...none, content, redactions, problem: 'empty' }
  }
  const terms = tokenize(content)
  const searchTerms = safeTerms(terms).join(' ')
  const analyzed: AnalyzedContent = { content, redactions, searchTerms, tsvector: tsvectorLiteral(searchTerms) }
  if (task.keepTerms) analyzed.terms = terms
  if (task.lexicalDimension !== undefined) {
    let embedder = lexicalEmbedders.get(task.lexicalDimension)
    if (!embedder) lexicalEmbedders.set(task.lexicalDimension, (embedder = new LexicalEmbedder({ dimension: task.lexicalDimension })))
    const started = performance.now()
    analyzed.vector = embedder.embedText(content, terms)
    analyzed.embedMs = performance.now() - started
  }
  return analyzed
}
