import { randomUUID } from 'node:crypto'
import type { FastifyBaseLogger } from 'fastify'
import type { Database } from '../db/database.js'
import type { Embedder } from '../embedder/embedder.js'
import type { RecallCache } from '../cache/recall-cache.js'
import { DependencyError } from '../classify-failure.js'
import { validationError } from '../errors.js'
import { LexicalEmbedder } from '../embedder/lexical-embedder.js'
import type { SageMetrics } from '../metrics/sage-metrics.js'
import { redactSecrets, type RedactionResult } from '../security/redact-secrets.js'
import { tokenize } from '../text/tokenize.js'
import { remembered } from '../remembered.js'
import { formatContext } from './context-block.js'
import type { ListParams, MemoryStore, NewMemory } from './memory-store.js'
import type { Recall } from './recall.js'
import { DEFAULTS, LIMITS, type Memory, type MemoryInput, type RecallBody, type RecallHit, type Role, type SaveResult } from './memory-schemas.js'
import { normalizeMetadata, normalizeTags, normalizeText, normalizeTimestamp } from './normalize.js'
import { safeTerms, type AnalyzedContent } from './content-analysis.js'
import { createContentAnalyzer, type ContentAnalyzer } from './content-analyzer.js'

export const DEFAULT_NAMESPACE = 'default'
/** A query's distinct terms beyond this add little to ranking and much to the cost of the text search. */
const MAX_QUERY_TERMS = 64
/** After the embedder fails, saves skip it for this long instead of each waiting out its timeout. */
const EMBEDDER_COOL_DOWN_MS = 10_000

export type SaveKind = 'single' | 'batch' | 'turn' | 'hook' | 'import' | 'queued' | 'mcp'

/** A memory validated, normalised and given its id, not yet embedded or written (what the save queue carries). */
export type PreparedMemory = Omit<NewMemory, 'embedding' | 'embedder' | 'search_vector'>

export interface TurnInput {
  user_input: string
  assistant_response: string
  session_id?: string | null
  namespace?: string
  metadata?: Record<string, unknown>
  tags?: string[]
}

/** What one call saves: a memory, a batch (all or nothing) or a turn's two memories (one transaction). */
export type SaveRequest = { memory: MemoryInput } | { items: readonly MemoryInput[] } | { turn: TurnInput }

export interface SaveOptions {
  kind: SaveKind
  /** With a batch, item i gets `key#i`; with a turn, `key#user` and `key#assistant`. */
  idempotencyKey?: string | null
  /** Acknowledge once durably queued (Prefer: respond-async) when a queue takes it; otherwise write now. */
  respondAsync?: boolean
}

/** Thrown to roll a rehearsed save back. */
const REHEARSAL = new Error('rehearsed save rolled back')

export type SaveOutcome =
  | { queued: true; ids: string[] }
  /** Written: no queue asked for or configured, or Redis unreachable at that moment. */
  | { queued: false; results: SaveResult[] }

/**
 * Where asynchronous saves go (src/queue/save-queue.ts): the ids once queued (a repeated Idempotency-Key's first
 * ones), the stored results when a repeat was written already, or undefined when it cannot take them now.
 */
export interface SaveQueueEntry {
  enqueue(prepared: readonly PreparedMemory[], kind: SaveKind): Promise<SaveOutcome | undefined>
}

export interface MemoryServiceDeps {
  db: Database
  store: MemoryStore
  recall: Recall
  embedder: Embedder
  metrics: SageMetrics
  log: FastifyBaseLogger
  redactSecrets: boolean
  embedTimeoutMs: number
  /** Where long texts are tokenized, redacted and embedded off the event loop; one of its own by default. */
  contentAnalyzer?: ContentAnalyzer
  /** Caches recalls; every save and delete in a namespace invalidates that namespace's entries. */
  recallCache?: RecallCache
  /** Called after a save wrote memories: their vectors wait in the backlog for the vector indexer. */
  onWritten?: (count: number) => void
  /** Called as a save begins writing; the function it returns, once it ended (written or not). */
  onWriting?: () => () => void
  /** Called with the namespace of each memory a save created, and of each recall answered (the overview's counts). */
  onSaved?: (namespaces: readonly string[]) => void
  onRecalled?: (namespace: string) => void
}

/** Who deletes, for the audit trail: an API key (request.access fits), or nobody in particular (a command, an open service). */
export interface Deleter {
  keyName: string | null
  scopes: readonly string[]
  /** When given, a memory whose namespace it refuses is treated as missing. */
  allows?(namespace: string): boolean
}

const UNNAMED_DELETER: Deleter = { keyName: null, scopes: [] }

export interface RecallOutcome {
  results: RecallHit[]
  took_ms: number
  context?: string
}

/** Metadata values this short (a cwd, a tool's name, a hook event) repeat from save to save: their redaction is kept. */
const REMEMBERED_STRING_CHARS = 256
const REMEMBERED_STRINGS = 1_000
const redactRemembered = remembered(redactSecrets, REMEMBERED_STRINGS)

/** redactSecrets, remembered for short strings (it is pure): a batch's 500 items mostly share their metadata values. */
function redactShortString(text: string): RedactionResult {
  return text.length > REMEMBERED_STRING_CHARS ? redactSecrets(text) : redactRemembered(text)
}

/**
 * The memory with its vector, written out field by field: `{ ...memory, embedding, embedder }` cost 2 µs a memory
 * (a batch of 500 makes 500), the literal a hundredth of that. A required field added to NewMemory fails to
 * compile here; an optional one must be added by hand.
 */
function withEmbedding(m: PreparedMemory, analysis: AnalyzedContent, embedding: number[] | null, embedderId: string | null): NewMemory {
  return {
    id: m.id,
    namespace: m.namespace,
    session_id: m.session_id,
    role: m.role,
    content: m.content,
    metadata: m.metadata,
    tags: m.tags,
    source_id: m.source_id,
    idempotency_key: m.idempotency_key,
    created_at: m.created_at,
    search_terms: m.search_terms,
    search_vector: analysis.tsvector,
    embedding,
    embedder: embedderId
  }
}

/** Terms for the full-text side: the shared tokenizer's, restricted to what is safe inside a tsquery. */
export function searchTerms(text: string): string[] {
  return safeTerms(tokenize(text))
}

interface SaveEntry {
  input: MemoryInput
  path: string
  idempotencyKey: string | null
  role?: Role
}

/** Save, recall, read and forget: the rules of the HTTP contract over the store, the recall query and the embedder. */
export function createMemoryService(deps: MemoryServiceDeps) {
  const { db, store, embedder, metrics, log } = deps
  const analyzer = deps.contentAnalyzer ?? createContentAnalyzer()
  /** The built-in embedder's vectors are computed with the terms, in the same worker; any other embedder is called. */
  const lexicalDimension = embedder instanceof LexicalEmbedder ? embedder.dimension : undefined
  let queue: SaveQueueEntry | undefined
  let embedderDownUntil = 0
  /** What analysing each prepared memory's content gave (its terms, tsvector and lexical vector), kept for its write. */
  const analyses = new WeakMap<PreparedMemory, AnalyzedContent>()

  /** Embeds within the time budget; null (save the text now, embed it later) when the embedder is slow or down. */
  async function embedWithinBudget(texts: string[], terms?: Array<string[] | undefined>): Promise<number[][] | null> {
    if (Date.now() < embedderDownUntil) return null
    const started = performance.now()
    try {
      // An in-process embedder cannot be cut off mid-call anyway; a timer per save would only cost.
      const vectors =
        terms && embedder.embedTokenized
          ? await embedder.embedTokenized(texts, terms)
          : await embedder.embed(texts, embedder.local ? undefined : AbortSignal.timeout(deps.embedTimeoutMs))
      metrics.embeddingDuration.observe({ embedder: embedder.id, outcome: 'ok' }, (performance.now() - started) / 1000)
      metrics.embeddedTexts.inc({ embedder: embedder.id }, texts.length)
      return vectors
    } catch (error) {
      metrics.embeddingDuration.observe({ embedder: embedder.id, outcome: 'error' }, (performance.now() - started) / 1000)
      embedderDownUntil = Date.now() + EMBEDDER_COOL_DOWN_MS
      log.warn({ err: error, embedder: embedder.id }, 'embedder unavailable; saving text now and embedding it later')
      return null
    }
  }

  /** Metadata string values (a tool's command line, say) are redacted like content; keys are left as they are. */
  function cleanMetadata(raw: Record<string, unknown> | undefined, field: string): Record<string, unknown> {
    const metadata = normalizeMetadata(raw, field)
    return deps.redactSecrets ? (redactStrings(metadata) as Record<string, unknown>) : metadata
  }

  function redactStrings(value: unknown): unknown {
    if (typeof value === 'string') {
      const redacted = redactShortString(value)
      for (const { kind, count } of redacted.redactions) metrics.redactions.inc({ kind }, count)
      return redacted.text
    }
    if (Array.isArray(value)) return value.map(redactStrings)
    if (value === null || typeof value !== 'object') return value
    // Keeps normalizeMetadata's null prototype.
    const out: Record<string, unknown> = Object.create(null)
    for (const [key, item] of Object.entries(value)) out[key] = redactStrings(item)
    return out
  }

  /** One memory from its input and its analysed content; a 400 naming the field when either is invalid. */
  function preparedFrom(entry: SaveEntry, analysis: AnalyzedContent): PreparedMemory {
    const { input, path } = entry
    const field = (name: string) => (path ? `${path}.${name}` : name)
    if (analysis.problem === 'empty') throw validationError(`${field('content')} must be a non-empty string (after removing control characters and whitespace)`)
    if (analysis.problem === 'too_long') throw validationError(`${field('content')} must be at most ${LIMITS.contentChars} characters`)
    for (const { kind, count } of analysis.redactions) metrics.redactions.inc({ kind }, count)
    const sourceId = input.source_id == null ? null : normalizeText(input.source_id)
    const sessionId = input.session_id == null ? null : normalizeText(input.session_id)
    const prepared: PreparedMemory = {
      id: randomUUID(),
      namespace: input.namespace ?? DEFAULT_NAMESPACE,
      session_id: sessionId || null,
      role: entry.role ?? input.role ?? 'note',
      content: analysis.content,
      metadata: cleanMetadata(input.metadata, field('metadata')),
      tags: normalizeTags(input.tags, field('tags')),
      source_id: sourceId || null,
      idempotency_key: entry.idempotencyKey,
      created_at: input.created_at ? normalizeTimestamp(input.created_at, field('created_at')) : new Date(),
      search_terms: analysis.searchTerms
    }
    analyses.set(prepared, analysis)
    return prepared
  }

  /** Validates and normalises, redacts, splits and (lexical) embeds: long contents in worker threads. */
  async function prepare(entries: readonly SaveEntry[]): Promise<PreparedMemory[]> {
    const analysed = await analyzer.analyzeAll(entries.map((entry) => ({
      text: entry.input.content, normalize: true, redact: deps.redactSecrets, lexicalDimension, keepTerms: lexicalDimension === undefined
    })))
    return entries.map((entry, i) => preparedFrom(entry, analysed[i]!))
  }

  /** A request's memories, each named by its place in errors (`items[3].content`). */
  function entriesOf(request: SaveRequest, idempotencyKey: string | null): SaveEntry[] {
    if ('memory' in request) return [{ input: request.memory, path: '', idempotencyKey }]
    if ('items' in request) {
      return request.items.map((input, index) => ({ input, path: `items[${index}]`, idempotencyKey: idempotencyKey ? `${idempotencyKey}#${index}` : null }))
    }
    const { turn } = request
    const shared = { namespace: turn.namespace, session_id: turn.session_id, metadata: turn.metadata, tags: turn.tags }
    return [
      { input: { ...shared, content: turn.user_input }, path: '', idempotencyKey: idempotencyKey ? `${idempotencyKey}#user` : null, role: 'user' },
      { input: { ...shared, content: turn.assistant_response }, path: '', idempotencyKey: idempotencyKey ? `${idempotencyKey}#assistant` : null, role: 'assistant' }
    ]
  }

  /** Each memory's analysis: kept from its preparation, or made again for one the save queue carried from another process. */
  async function analysesOf(prepared: readonly PreparedMemory[]): Promise<AnalyzedContent[]> {
    const missing = prepared.filter((m) => !analyses.has(m))
    if (missing.length > 0) {
      const made = await analyzer.analyzeAll(missing.map((m) => ({ text: m.content, normalize: false, redact: false, lexicalDimension, keepTerms: lexicalDimension === undefined })))
      missing.forEach((m, i) => analyses.set(m, made[i]!))
    }
    return prepared.map((m) => analyses.get(m)!)
  }

  async function withEmbeddings(prepared: readonly PreparedMemory[]): Promise<NewMemory[]> {
    const analysed = await analysesOf(prepared)
    let vectors: Array<number[] | undefined> | null
    if (lexicalDimension !== undefined) {
      vectors = analysed.map((analysis) => analysis.vector)
      const embedMs = analysed.reduce((sum, analysis) => sum + (analysis.embedMs ?? 0), 0)
      metrics.embeddingDuration.observe({ embedder: embedder.id, outcome: 'ok' }, embedMs / 1000)
      metrics.embeddedTexts.inc({ embedder: embedder.id }, prepared.length)
    } else {
      vectors = await embedWithinBudget(prepared.map((m) => m.content), analysed.map((analysis) => analysis.terms))
    }
    return prepared.map((m, i) => {
      const vector = vectors?.[i] ?? null
      return withEmbedding(m, analysed[i]!, vector, vector ? embedder.id : null)
    })
  }

  function count(kind: SaveKind, results: SaveResult[]): void {
    const created = results.filter((r) => r.created).length
    if (created > 0) metrics.saves.inc({ kind, outcome: 'created' }, created)
    if (results.length > created) metrics.saves.inc({ kind, outcome: 'duplicate' }, results.length - created)
  }

  /**
   * Embeds and writes prepared memories in one transaction, idempotent on their ids (a replayed queue entry
   * writes once), then the after-write effects: the vector indexer is woken, the namespaces' activity counted,
   * and the cached recalls of every namespace that gained a memory invalidated before the caller hears of it.
   */
  async function savePrepared(prepared: readonly PreparedMemory[], kind: SaveKind): Promise<SaveResult[]> {
    const ended = deps.onWriting?.()
    let results: SaveResult[]
    let memories: NewMemory[]
    try {
      memories = await withEmbeddings(prepared)
      results = memories.length === 1 ? await store.insertMany(memories) : await db.transaction((tx) => store.insertMany(memories, tx))
    } finally {
      ended?.()
    }
    count(kind, results)
    const created = results.filter((result) => result.created).length
    if (created > 0) deps.onWritten?.(created)
    const createdIn = memories.filter((_, i) => results[i]!.created).map((m) => m.namespace)
    deps.onSaved?.(createdIn)
    await deps.recallCache?.invalidate(createdIn)
    return results
  }

  return {
    /** The backfill reached the embedder again: saves and recalls stop skipping it. */
    embedderRecovered(): void {
      embedderDownUntil = 0
    },

    /**
     * Every save goes through here (routes, hooks, MCP): prepare (a 400 naming the field before anything is queued
     * or written), then queue it when asked and a queue takes it, else write it now with its after-write effects.
     * All memories of one request land together or not at all.
     */
    async save(request: SaveRequest, options: SaveOptions): Promise<SaveOutcome> {
      const prepared = await prepare(entriesOf(request, options.idempotencyKey ?? null))
      if ('turn' in request) {
        // The answer sorts after the question even within one millisecond.
        prepared[1]!.created_at = new Date(prepared[0]!.created_at.getTime() + 1)
      }
      if (options.respondAsync && queue) {
        const outcome = await queue.enqueue(prepared, options.kind)
        if (outcome) return outcome
      }
      return { queued: false, results: await savePrepared(prepared, options.kind) }
    },

    /** The write step alone, for memories prepared earlier (the save queue's consumer). */
    savePrepared,

    /**
     * A save's whole path, prepared, embedded and inserted, then rolled back: the warm-up plans and runs the
     * statements a first save would, and keeps nothing.
     */
    async rehearseSave(request: SaveRequest): Promise<void> {
      const memories = await withEmbeddings(await prepare(entriesOf(request, null)))
      await db.transaction(async (tx) => {
        await store.insertMany(memories, tx)
        throw REHEARSAL
      }).catch((error: unknown) => {
        if (error !== REHEARSAL) throw error
      })
    },

    /** Where `respondAsync` saves are queued (the save-queue plugin, once it exists). */
    useQueue(entry: SaveQueueEntry): void {
      queue = entry
    },

    /** Lets go of the content analyzer's worker threads. */
    close: () => analyzer.close(),

    async recall(body: RecallBody, options: { excludeSessionId?: string } = {}): Promise<RecallOutcome> {
      const started = performance.now()
      const mode = body.mode ?? 'hybrid'
      const k = body.k ?? DEFAULTS.k
      const query = normalizeText(body.query)
      if (query.length === 0) throw validationError('query must be a non-empty string')
      const namespace = body.namespace ?? DEFAULT_NAMESPACE
      deps.onRecalled?.(namespace)
      // What reaches SQL is normalised as saves normalise what they store: matches agree, and no NUL reaches Postgres.
      const sessionId = body.session_id == null ? body.session_id : normalizeText(body.session_id)
      const filter = normalizeFilter(options.excludeSessionId ? { ...body.filter, exclude_session_id: options.excludeSessionId } : body.filter)
      const normalised = {
        ...body, query, namespace, mode, k, min_score: body.min_score ?? 0, format: body.format ?? 'json',
        token_budget: body.format === 'context' ? (body.token_budget ?? DEFAULTS.tokenBudget) : undefined, exclude_session_id: options.excludeSessionId
      }
      const slot = await deps.recallCache?.get<Omit<RecallOutcome, 'took_ms'>>(namespace, normalised)
      if (slot?.value) {
        const tookMs = performance.now() - started
        metrics.recallDuration.observe({ mode }, tookMs / 1000)
        return { ...slot.value, took_ms: Math.round(tookMs * 100) / 100 }
      }
      const split = tokenize(query)
      const terms = [...new Set(safeTerms(split))].slice(0, MAX_QUERY_TERMS)
      const vector = mode === 'text' ? undefined : (await embedWithinBudget([query], [split]))?.[0]
      // Hybrid falls back to full text alone; a caller who asked for vectors only is told to retry.
      if (mode === 'vector' && !vector) throw new DependencyError('embedder', 'down', 'the embedder is unavailable; recall with mode "text" or "hybrid" meanwhile', 10)
      const rows = await deps.recall.recall({
        namespace,
        sessionId,
        mode,
        k,
        filter,
        vector,
        terms
      })
      const minScore = body.min_score ?? 0
      const results: RecallHit[] = rows
        .filter((row) => row.score > 0 && row.score >= minScore)
        .map(({ score, vector_score, text_score, matched_terms, ...memory }) => ({
          ...memory,
          score: round(score),
          scores: { vector: vector_score === null ? null : round(vector_score), text: text_score === null ? null : round(text_score) },
          matched_terms
        }))
      const tookMs = performance.now() - started
      metrics.recallDuration.observe({ mode }, tookMs / 1000)
      const outcome: RecallOutcome = { results, took_ms: Math.round(tookMs * 100) / 100 }
      if (body.format === 'context') outcome.context = formatContext(results, body.token_budget ?? DEFAULTS.tokenBudget)
      // A hybrid recall that fell back to text alone (embedder down) is not kept: the next one may do better.
      if (slot && (mode === 'text' || vector)) deps.recallCache!.set(slot, { results: outcome.results, context: outcome.context })
      return outcome
    },

    get: (id: string): Promise<Memory | undefined> => store.get(id),
    idsByIdempotencyKey: store.idsByIdempotencyKey,
    list: (params: ListParams) => store.list(params.sessionId === undefined ? params : { ...params, sessionId: normalizeText(params.sessionId) }),
    /**
     * Deletes one memory and audits it in the same transaction; answers its namespace, or undefined when it
     * is missing or outside `by.allows` (the two look the same to the caller).
     */
    delete: (id: string, by: Deleter = UNNAMED_DELETER): Promise<string | undefined> =>
      db.transaction(async (tx) => {
        const namespace = await store.lockNamespaceOf(id, tx)
        if (namespace === undefined || (by.allows && !by.allows(namespace))) return undefined
        await store.delete(id, tx)
        await store.recordDeletion({ keyName: by.keyName, keyScopes: by.scopes, namespace, memoryId: id, count: 1 }, tx)
        return namespace
      }).then(async (namespace) => {
        // After the commit, before the answer: no recall cached earlier can return the deleted memory.
        if (namespace !== undefined) await deps.recallCache?.invalidate([namespace])
        return namespace
      }),

    /** Forgets a namespace or one session of it, audited in the same transaction (even when nothing matched). */
    deleteMany: (namespace: string, sessionId?: string, by: Deleter = UNNAMED_DELETER): Promise<number> =>
      db.transaction(async (tx) => {
        const session = sessionId === undefined ? undefined : normalizeText(sessionId)
        const count = await store.deleteMany(namespace, session, tx)
        await store.recordDeletion({ keyName: by.keyName, keyScopes: by.scopes, namespace, sessionId: session, count }, tx)
        return count
      }).then(async (count) => {
        if (count > 0) await deps.recallCache?.invalidate([namespace])
        return count
      }),
    sessions: (namespace: string, limit: number) => store.sessions(namespace, limit),
    namespaces: () => store.namespaces()
  }
}

/** A recall filter normalised as saves normalise what they store; since/until outside years 1-9999 are a 400. */
function normalizeFilter(filter: RecallBody['filter']): RecallBody['filter'] {
  if (!filter) return filter
  return {
    ...filter,
    tags: filter.tags && normalizeTags(filter.tags, 'filter.tags'),
    metadata: filter.metadata && normalizeMetadata(filter.metadata, 'filter.metadata'),
    exclude_session_id: filter.exclude_session_id == null ? filter.exclude_session_id : normalizeText(filter.exclude_session_id),
    since: filter.since && normalizeTimestamp(filter.since, 'filter.since').toISOString(),
    until: filter.until && normalizeTimestamp(filter.until, 'filter.until').toISOString()
  }
}

const round = (n: number) => Math.round(n * 10_000) / 10_000

export type MemoryService = ReturnType<typeof createMemoryService>
