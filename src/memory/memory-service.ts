import { randomUUID } from 'node:crypto'
import type { FastifyBaseLogger } from 'fastify'
import type { Database } from '../db/database.js'
import type { Embedder } from '../embedder/embedder.js'
import type { RecallCache } from '../cache/recall-cache.js'
import { DependencyError } from '../classify-failure.js'
import { validationError } from '../errors.js'
import type { SageMetrics } from '../metrics/sage-metrics.js'
import { redactSecrets, type RedactionResult } from '../security/redact-secrets.js'
import { tokenize } from '../text/tokenize.js'
import { remembered } from '../remembered.js'
import { formatContext } from './context-block.js'
import type { ListParams, MemoryStore, NewMemory } from './memory-store.js'
import type { Recall } from './recall.js'
import type { Memory, MemoryInput, RecallBody, RecallHit, Role, SaveResult } from './memory-schemas.js'
import { normalizeContent, normalizeMetadata, normalizeTags, normalizeText, normalizeTimestamp } from './normalize.js'

export const DEFAULT_NAMESPACE = 'default'
/** A query's distinct terms beyond this add little to ranking and much to the cost of the text search. */
const MAX_QUERY_TERMS = 64
/** After the embedder fails, saves skip it for this long instead of each waiting out its timeout. */
const EMBEDDER_COOL_DOWN_MS = 10_000
const SAFE_TERM = /^[\p{Ll}\p{Lo}\p{Nd}]+$/u

export type SaveKind = 'single' | 'batch' | 'turn' | 'hook' | 'import' | 'queued' | 'mcp'

/** A memory validated, normalised and given its id, not yet embedded or written (what the save queue carries). */
export type PreparedMemory = Omit<NewMemory, 'embedding' | 'embedder'>

export interface TurnInput {
  user_input: string
  assistant_response: string
  session_id?: string | null
  namespace?: string
  metadata?: Record<string, unknown>
  tags?: string[]
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
function withEmbedding(m: PreparedMemory, embedding: number[] | null, embedderId: string | null): NewMemory {
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
    embedding,
    embedder: embedderId
  }
}

/** Terms for the full-text side: the shared tokenizer's, restricted to what is safe inside a tsquery. */
export function searchTerms(text: string): string[] {
  return safeTerms(tokenize(text))
}

function safeTerms(terms: readonly string[]): string[] {
  return terms.filter((term) => SAFE_TERM.test(term))
}

/** Save, recall, read and forget: the rules of ../shared/api-contract.md over the store, the recall query and the embedder. */
export function createMemoryService(deps: MemoryServiceDeps) {
  const { db, store, embedder, metrics, log } = deps
  let embedderDownUntil = 0
  /** Each prepared memory's terms, split once for full-text search and reused by an embedder that takes them. */
  const splitTerms = new WeakMap<PreparedMemory, string[]>()

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

  function cleanContent(raw: string, field: string): string {
    let content = normalizeContent(raw, field)
    if (deps.redactSecrets) {
      const redacted = redactSecrets(content)
      for (const { kind, count } of redacted.redactions) metrics.redactions.inc({ kind }, count)
      if (redacted.redactions.length > 0) content = normalizeContent(redacted.text, field)
    }
    return content
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

  function prepare(input: MemoryInput, path: string, idempotencyKey: string | null, role?: Role): PreparedMemory {
    const field = (name: string) => (path ? `${path}.${name}` : name)
    const content = cleanContent(input.content, field('content'))
    const sourceId = input.source_id == null ? null : normalizeText(input.source_id)
    const sessionId = input.session_id == null ? null : normalizeText(input.session_id)
    const terms = tokenize(content)
    const prepared: PreparedMemory = {
      id: randomUUID(),
      namespace: input.namespace ?? DEFAULT_NAMESPACE,
      session_id: sessionId || null,
      role: role ?? input.role ?? 'note',
      content,
      metadata: cleanMetadata(input.metadata, field('metadata')),
      tags: normalizeTags(input.tags, field('tags')),
      source_id: sourceId || null,
      idempotency_key: idempotencyKey,
      created_at: input.created_at ? normalizeTimestamp(input.created_at, field('created_at')) : new Date(),
      search_terms: safeTerms(terms).join(' ')
    }
    splitTerms.set(prepared, terms)
    return prepared
  }

  async function withEmbeddings(prepared: readonly PreparedMemory[]): Promise<NewMemory[]> {
    // A memory from the save queue was prepared by another process: its terms are split again.
    const vectors = await embedWithinBudget(prepared.map((m) => m.content), prepared.map((m) => splitTerms.get(m)))
    return prepared.map((m, i) => withEmbedding(m, vectors?.[i] ?? null, vectors ? embedder.id : null))
  }

  function count(kind: SaveKind, results: SaveResult[]): void {
    const created = results.filter((r) => r.created).length
    if (created > 0) metrics.saves.inc({ kind, outcome: 'created' }, created)
    if (results.length > created) metrics.saves.inc({ kind, outcome: 'duplicate' }, results.length - created)
  }

  /** A batch's items, each named by its index in errors; with an Idempotency-Key, item i gets `key#i`. */
  function prepareBatch(items: readonly MemoryInput[], idempotencyKey?: string): PreparedMemory[] {
    return items.map((item, index) => prepare(item, `items[${index}]`, idempotencyKey ? `${idempotencyKey}#${index}` : null))
  }

  /** A turn's two memories: the user's input, then the assistant's answer one millisecond later. */
  function prepareTurn(turn: TurnInput, idempotencyKey?: string): [PreparedMemory, PreparedMemory] {
    const shared = { namespace: turn.namespace, session_id: turn.session_id, metadata: turn.metadata, tags: turn.tags }
    const key = idempotencyKey
    const createdAt = new Date()
    const user = prepare({ ...shared, content: turn.user_input }, '', key ? `${key}#user` : null, 'user')
    const assistant = prepare({ ...shared, content: turn.assistant_response }, '', key ? `${key}#assistant` : null, 'assistant')
    // The answer sorts after the question even within one millisecond.
    user.created_at = createdAt
    assistant.created_at = new Date(createdAt.getTime() + 1)
    return [user, assistant]
  }

  /**
   * Embeds and writes prepared memories in one transaction, idempotent on their ids (a replayed queue entry
   * writes once), then invalidates the cached recalls of every namespace that gained a memory.
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

    /** Validates and normalises without writing: what an asynchronous save checks before it acknowledges. */
    prepare,

    prepareBatch,
    prepareTurn,
    savePrepared,

    async save(input: MemoryInput, options: { idempotencyKey?: string; kind?: SaveKind } = {}): Promise<SaveResult> {
      const [result] = await savePrepared([prepare(input, '', options.idempotencyKey ?? null)], options.kind ?? 'single')
      return result!
    },

    /** All items or none: any invalid item is a 400 naming its index, and nothing is written. */
    async saveBatch(items: MemoryInput[], options: { idempotencyKey?: string; kind?: SaveKind } = {}): Promise<SaveResult[]> {
      return savePrepared(prepareBatch(items, options.idempotencyKey), options.kind ?? 'batch')
    },

    /** A user input and the assistant's answer, saved together in one transaction. */
    async saveTurn(turn: TurnInput, options: { idempotencyKey?: string } = {}): Promise<{ ids: [string, string]; created: boolean }> {
      const results = await savePrepared(prepareTurn(turn, options.idempotencyKey), 'turn')
      return { ids: [results[0]!.id, results[1]!.id], created: results.some((r) => r.created) }
    },

    async recall(body: RecallBody, options: { excludeSessionId?: string } = {}): Promise<RecallOutcome> {
      const started = performance.now()
      const mode = body.mode ?? 'hybrid'
      const k = body.k ?? 8
      const query = normalizeText(body.query)
      if (query.length === 0) throw validationError('query must be a non-empty string')
      const namespace = body.namespace ?? DEFAULT_NAMESPACE
      deps.onRecalled?.(namespace)
      // What reaches SQL is normalised as saves normalise what they store: matches agree, and no NUL reaches Postgres.
      const sessionId = body.session_id == null ? body.session_id : normalizeText(body.session_id)
      const filter = normalizeFilter(options.excludeSessionId ? { ...body.filter, exclude_session_id: options.excludeSessionId } : body.filter)
      const normalised = {
        ...body, query, namespace, mode, k, min_score: body.min_score ?? 0, format: body.format ?? 'json',
        token_budget: body.format === 'context' ? (body.token_budget ?? 1500) : undefined, exclude_session_id: options.excludeSessionId
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
      if (body.format === 'context') outcome.context = formatContext(results, body.token_budget ?? 1500)
      // A hybrid recall that fell back to text alone (embedder down) is not kept: the next one may do better.
      if (slot && (mode === 'text' || vector)) deps.recallCache!.set(slot, { results: outcome.results, context: outcome.context })
      return outcome
    },

    get: (id: string): Promise<Memory | undefined> => store.get(id),
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
