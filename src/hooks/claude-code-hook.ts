import { createHash } from 'node:crypto'
import type { FastifyBaseLogger } from 'fastify'
import type { Registry } from 'prom-client'
import { failureFields, isDependencyFailure } from '../classify-failure.js'
import { cutToTokens, estimateTokens, formatContext, oneLine } from '../memory/context-block.js'
import { searchTerms, type MemoryService } from '../memory/memory-service.js'
import { LIMITS, type Memory, type MemoryInput } from '../memory/memory-schemas.js'
import type { EmbedderKind } from '../embedder/embedder.js'
import { registerHookMetrics } from '../metrics/sage-metrics.js'
import { NAMESPACE_PATTERN, type HookNamespace } from './hook-namespace.js'
import { judgeRelevance, SUMMARY_TAG } from './hook-relevance.js'
import { createSaveRetryBuffer, type SaveRetryBuffer } from './save-retry-buffer.js'
import { createSaveSpool } from './save-spool.js'
import { tracedHit, type InjectionLog } from './injection-log.js'
import type { Injection, InjectionOutcome, TracedHit } from './injection-store.js'
import type { ProjectMode } from './project-mode.js'

/**
 * What Sage does with each Claude Code hook event (see docs/hooks.md). Every answer is a JSON object that
 * Claude Code reads back, and comes within the deadline whatever the database does: work that is not done
 * by then is abandoned for the answer (`{}`), while a save that fails is kept for retry, never dropped.
 */

export type HookAnswer =
  | Record<string, never>
  | { hookSpecificOutput: { hookEventName: 'UserPromptSubmit' | 'SessionStart'; additionalContext: string } }

/** Claude Code cuts additionalContext longer than this to a preview. */
export const CONTEXT_MAX_CHARS = 10_000

const RECALL_K = 10
/** memory-service.ts keeps a query's first 64 distinct terms. */
const MAX_QUERY_TERMS = 64
const DIGEST_SESSIONS = 5
/** Each quoted prompt or answer in the digest: enough to say what the session was about. */
const DIGEST_QUOTE_TOKENS = 60
const DIGEST_SUMMARY_TOKENS = 400
const KNOWN_EVENTS = ['UserPromptSubmit', 'Stop', 'SubagentStop', 'SessionStart', 'PostCompact', 'PreCompact', 'SessionEnd'] as const
type EventLabel = (typeof KNOWN_EVENTS)[number] | 'other' | 'none'

export type HookOutcome = 'context' | 'empty' | 'saved' | 'ignored' | 'malformed' | 'forbidden' | 'opted_out' | 'deadline' | 'error'


/** What a dry run answers besides the hook's answer: what it would have saved and injected, and why. */
export interface HookDryRun {
  namespace: string | null
  project_mode: ProjectMode
  would_save: boolean
  injection: Omit<Injection, 'created_at' | 'prompt_memory_id'> | null
}

export interface ClaudeCodeHookDeps {
  memories: Pick<MemoryService, 'save' | 'recall' | 'list' | 'sessions'>
  namespaceOf: HookNamespace
  log: FastifyBaseLogger
  /** Every answer within this many milliseconds of the request's arrival (HOOK_DEADLINE_MS). */
  deadlineMs: number
  /** Tokens of context one answer injects at most (HOOK_TOKEN_BUDGET). */
  tokenBudget: number
  minScore?: number
  /** Whether recall's vectors match words or meaning: only a semantic embedder's similarity admits a memory alone. */
  embedderKind?: EmbedderKind
  /** Where the hook's own metrics go (the app's registry); none in unit tests that do not look. */
  registry?: Registry
  /** Retry timing of the in-process buffer (tests shorten it). */
  retry?: { initialDelayMs?: number; maxDelayMs?: number; maxItems?: number }
  /** Where saves still waiting at close are kept for the next start (under the data folder); none loses them. */
  spoolDir?: string
  /** Where each answered UserPromptSubmit and SessionStart is traced. */
  injections?: Pick<InjectionLog, 'record'>
  /** The project's own setting (.sage.json) for a cwd: 'off' answers {} at once, 'save-only' never injects. */
  projectMode?: (cwd: string | undefined) => Promise<ProjectMode>
}

export interface HandleOptions {
  /** `?namespace=` from the hook's URL: wins over the one derived from `cwd`. */
  namespace?: string
  /** May this caller use the namespace? False answers `{}` (see routes/hooks/claude-code.ts). */
  authorize?: (namespace: string) => boolean | Promise<boolean>
  /** Milliseconds already spent on the request before the handler ran (parsing, auth). */
  elapsedMs?: number
  log?: FastifyBaseLogger
  /** Save nothing and trace nothing: `onDryRun` hears what would have been saved and injected. */
  dryRun?: boolean
  onDryRun?: (result: HookDryRun) => void
}

export interface ClaudeCodeHook {
  /** Never rejects, and resolves within the deadline. */
  handle(body: unknown, options?: HandleOptions): Promise<HookAnswer>
  /** Saves waiting for the database to come back. */
  retryBuffer: SaveRetryBuffer<PendingSave>
  /** Buffers again the saves an earlier process left spooled. */
  replay(): Promise<number>
  close(timeoutMs?: number): Promise<void>
}

export interface PendingSave {
  input: MemoryInput
  idempotencyKey: string
}

interface HookPayload {
  event: string
  sessionId?: string
  cwd?: string
  transcriptPath?: string
  text: (field: string) => string | undefined
  raw: Record<string, unknown>
}

const EMPTY: HookAnswer = Object.freeze({}) as Record<string, never>
const DEADLINE = Symbol('deadline')

/** What one request learns for its trace while it answers. */
interface TraceNote {
  namespace?: string
  mode: ProjectMode
  dryRun: boolean
  outcome?: InjectionOutcome
  hits: TracedHit[]
  promptMemoryId?: string
  /** A dry run reached a save it skipped. */
  wouldSave?: boolean
}

export function createClaudeCodeHook(deps: ClaudeCodeHookDeps): ClaudeCodeHook {
  const { memories, namespaceOf } = deps
  const metrics = deps.registry ? registerHookMetrics(deps.registry) : undefined
  const count = (event: EventLabel, outcome: HookOutcome) => metrics?.requests.inc({ event, outcome })

  /** Queued when Redis is configured (durable at once; saved now while Redis is away), else saved now. */
  async function store(input: MemoryInput, idempotencyKey: string): Promise<string | undefined> {
    const outcome = await memories.save({ memory: input }, { kind: 'hook', idempotencyKey, respondAsync: true })
    return outcome.queued ? outcome.ids[0] : outcome.results[0]?.id
  }

  const retryBuffer = createSaveRetryBuffer<PendingSave>({
    save: async (pending) => void (await store(pending.input, pending.idempotencyKey)),
    isRetryable,
    sizeOf: (pending) => pending.input.content.length,
    log: deps.log,
    ...deps.retry,
    onOutcome: (outcome, n) => metrics?.deferred.inc({ outcome }, n),
    spool: deps.spoolDir === undefined ? undefined : createSaveSpool(deps.spoolDir, isPendingSave),
    onSpool: (event, n) => metrics?.spooled.inc({ event }, n)
  })
  metrics?.bufferGauge(() => retryBuffer.size())

  /** Saves now; a failure worth retrying goes to the retry buffer. Never rejects, so it may outlive the answer. */
  async function persist(input: MemoryInput, log: FastifyBaseLogger, note: TraceNote): Promise<string | undefined> {
    if (note.dryRun) {
      note.wouldSave = true
      return undefined
    }
    const idempotencyKey = hookIdempotencyKey(input)
    try {
      return await store(input, idempotencyKey)
    } catch (error) {
      if (!isRetryable(error)) {
        log.warn({ err: error, namespace: input.namespace }, 'hook save rejected')
        return
      }
      // The outage itself is logged once by the retry buffer; each save it holds is a debug line.
      log.debug({ ...failureFields(error), namespace: input.namespace }, 'hook save failed; kept for retry')
      retryBuffer.add({ input, idempotencyKey })
    }
  }

  async function answer(payload: HookPayload, namespace: string, log: FastifyBaseLogger, note: TraceNote): Promise<[HookAnswer, HookOutcome]> {
    const base = { namespace, session_id: payload.sessionId ?? null, created_at: new Date().toISOString() }
    const metadata = (extra: Record<string, unknown> = {}): Record<string, unknown> => ({
      ...(payload.cwd === undefined ? {} : { cwd: payload.cwd }),
      tool: 'claude-code',
      hook_event: payload.event,
      ...(payload.transcriptPath === undefined ? {} : { transcript: payload.transcriptPath }),
      ...extra
    })

    switch (payload.event) {
      case 'UserPromptSubmit': {
        const prompt = payload.text('prompt')
        if (prompt === undefined) return [EMPTY, 'malformed']
        // Claude Code's prompt_id, or Codex CLI's turn_id (its UserPromptSubmit has no prompt_id): either makes a resend one memory.
        const promptId = boundedId(payload.raw.prompt_id) ?? boundedId(payload.raw.turn_id)
        const { content, truncated } = capContent(prompt)
        const saved = persist(
          { ...base, role: 'user', content, source_id: promptId ?? null, metadata: metadata(truncated ? { truncated: true } : {}) },
          log,
          note
        )
        const context = note.mode === 'save-only' ? '' : await recallContext(prompt, namespace, payload.sessionId, promptId, note)
        note.outcome ??= 'save_only'
        note.promptMemoryId = await saved
        return context === '' ? [EMPTY, 'empty'] : [contextAnswer('UserPromptSubmit', context), 'context']
      }
      case 'Stop':
      case 'SubagentStop': {
        const message = payload.text('last_assistant_message')
        if (message === undefined) return [EMPTY, 'malformed']
        const { content, truncated } = capContent(message)
        const agent = typeof payload.raw.agent_type === 'string' ? { agent_type: payload.raw.agent_type } : {}
        await persist({ ...base, role: 'assistant', content, metadata: metadata({ ...agent, ...(truncated ? { truncated: true } : {}) }) }, log, note)
        return [EMPTY, 'saved']
      }
      case 'PostCompact': {
        const summary = payload.text('compact_summary')
        if (summary === undefined) return [EMPTY, 'malformed']
        const { content, truncated } = capContent(summary)
        const trigger = typeof payload.raw.trigger === 'string' ? { trigger: payload.raw.trigger } : {}
        await persist(
          { ...base, role: 'note', content, tags: [SUMMARY_TAG], metadata: metadata({ ...trigger, ...(truncated ? { truncated: true } : {}) }) },
          log,
          note
        )
        return [EMPTY, 'saved']
      }
      case 'SessionStart': {
        if (note.mode === 'save-only') {
          note.outcome = 'save_only'
          return [EMPTY, 'empty']
        }
        const digest = await sessionDigest(namespace, payload.sessionId, note)
        return digest === '' ? [EMPTY, 'empty'] : [contextAnswer('SessionStart', digest), 'context']
      }
      default:
        // PreCompact, SessionEnd and events this version does not know: nothing to save or say.
        log.info({ hook_event: payload.event, namespace }, 'hook event ignored')
        return [EMPTY, 'ignored']
    }
  }

  /** The most relevant memories of earlier sessions as one block of dated facts, or '' when none is relevant enough. */
  async function recallContext(prompt: string, namespace: string, sessionId: string | undefined, promptId: string | undefined, note: TraceNote): Promise<string> {
    const query = prompt.slice(0, LIMITS.queryChars)
    const { results } = await memories.recall(
      { query, namespace, k: RECALL_K, mode: 'hybrid' },
      sessionId === undefined ? {} : { excludeSessionId: sessionId }
    )
    const said = comparable(prompt)
    const verdicts = judgeRelevance(results, {
      promptTerms: Math.min(new Set(searchTerms(query)).size, MAX_QUERY_TERMS),
      // The prompt just saved, when the session is unknown or the save raced the recall.
      isEcho: (hit) => (promptId !== undefined && hit.source_id === promptId) || comparable(hit.content) === said,
      embedderKind: deps.embedderKind ?? 'lexical',
      minScore: deps.minScore
    })
    const relevant = verdicts.filter((verdict) => verdict.admitted).sort((a, b) => b.score - a.score)
    const heading = `Sage recalled these from earlier sessions of "${namespace}" (most relevant first; each line starts with the date it was said):`
    const context = relevant.length === 0 ? '' : fitCharacters(formatContext(relevant.map(({ hit }) => hit), deps.tokenBudget, heading), CONTEXT_MAX_CHARS)
    // One line per memory after the heading: the relevant ones past them did not fit the budget.
    const fitted = context === '' ? 0 : context.split('\n').length - 1
    const injected = new Set(relevant.slice(0, fitted).map(({ hit }) => hit))
    note.hits = [...relevant, ...verdicts.filter((verdict) => !verdict.admitted)].map(({ hit, rule, admitted }) =>
      tracedHit(hit, injected.has(hit), injected.has(hit) || !admitted ? rule : 'over_budget'))
    note.outcome = results.length === 0 ? 'nothing_recalled' : fitted === 0 ? 'none_relevant' : 'injected'
    return context
  }

  /** The project's latest summary and its last few sessions (what was asked, how it ended), newest first. */
  async function sessionDigest(namespace: string, currentSession: string | undefined, note: TraceNote): Promise<string> {
    const [sessions, notes] = await Promise.all([
      memories.sessions(namespace, DIGEST_SESSIONS + 1),
      memories.list({ namespace, role: 'note', limit: 50 })
    ])
    const earlier = sessions.filter((s) => s.session_id !== currentSession).slice(0, DIGEST_SESSIONS)
    const summary = notes.items.find((note) => note.tags.includes(SUMMARY_TAG) && (currentSession === undefined || note.session_id !== currentSession))
    note.outcome = 'no_history'
    if (earlier.length === 0 && summary === undefined) return ''

    const lastOf = async (sessionId: string, role: 'user' | 'assistant') =>
      (await memories.list({ namespace, sessionId, role, limit: 1 })).items[0]
    const details = await Promise.all(earlier.map(async (s) => ({ s, asked: await lastOf(s.session_id, 'user'), answered: await lastOf(s.session_id, 'assistant') })))

    const budget = deps.tokenBudget
    const lines = [`Sage: recent work in "${namespace}" from earlier sessions, newest first.`]
    let used = estimateTokens(lines[0]!)
    const push = (line: string): boolean => {
      const tokens = estimateTokens(line) + 1
      if (used + tokens > budget) return false
      lines.push(line)
      used += tokens
      return true
    }
    if (summary !== undefined) {
      const pushed = push(`Latest summary (${summary.created_at.slice(0, 10)}): ${cutToTokens(oneLine(summary.content), Math.min(DIGEST_SUMMARY_TOKENS, Math.max(16, budget - used - 20)))}`)
      note.hits.push(digestHit(summary, pushed, 'latest_summary'))
    }
    if (details.length > 0) push('Recent sessions:')
    for (const { s, asked, answered } of details) {
      const parts = [`- ${s.last_at.slice(0, 10)}, ${s.count} ${s.count === 1 ? 'memory' : 'memories'}`]
      if (asked) parts.push(`last asked: "${quote(asked)}"`)
      if (answered) parts.push(`last answer: "${quote(answered)}"`)
      const pushed = push(parts.join('; '))
      for (const memory of [asked, answered]) if (memory) note.hits.push(digestHit(memory, pushed, 'recent_session'))
      if (!pushed) break
    }
    const digest = lines.length > 1 ? fitCharacters(lines.join('\n'), CONTEXT_MAX_CHARS) : ''
    if (digest !== '') note.outcome = 'injected'
    return digest
  }

  return {
    retryBuffer,
    async handle(body, options = {}) {
      const log = options.log ?? deps.log
      const elapsed = options.elapsedMs ?? 0
      // Room to serialise and write the answer before the deadline itself.
      const budgetMs = Math.max(0, deps.deadlineMs - elapsed - Math.min(20, deps.deadlineMs / 10))
      const payload = readPayload(body)
      if (payload === undefined) {
        log.warn({ body_type: typeof body }, 'hook body is not a JSON object with hook_event_name; answered {}')
        count('none', 'malformed')
        return EMPTY
      }
      const label: EventLabel = (KNOWN_EVENTS as readonly string[]).includes(payload.event) ? (payload.event as EventLabel) : 'other'
      const started = performance.now()
      const note: TraceNote = { mode: 'on', dryRun: options.dryRun === true, hits: [] }

      const work = (async (): Promise<[HookAnswer, HookOutcome]> => {
        note.mode = (await deps.projectMode?.(payload.cwd)) ?? 'on'
        if (note.mode === 'off') return [EMPTY, 'opted_out']
        const namespace = options.namespace ?? (await namespaceOf(payload.cwd))
        if (!NAMESPACE_PATTERN.test(namespace)) {
          log.warn({ namespace }, 'hook ?namespace= is not 1-128 characters of [A-Za-z0-9._:/@-]; answered {} and saved nothing')
          return [EMPTY, 'malformed']
        }
        // Access: the single place a caller's key is checked against the namespace (see routes/hooks/claude-code.ts).
        if (options.authorize && !(await options.authorize(namespace))) {
          log.warn({ namespace, hook_event: payload.event }, 'hook namespace outside the key\'s scope; answered {}')
          return [EMPTY, 'forbidden']
        }
        note.namespace = namespace
        return answer(payload, namespace, log, note)
      })().catch((error: unknown): [HookAnswer, HookOutcome] => {
        log[isDependencyFailure(error) ? 'debug' : 'warn']({ ...failureFields(error), hook_event: payload.event }, 'hook failed open; answered {}')
        return [EMPTY, 'error']
      })

      let timer: NodeJS.Timeout | undefined
      const deadline = new Promise<typeof DEADLINE>((resolve) => {
        timer = setTimeout(() => resolve(DEADLINE), budgetMs)
      })
      // A dry run waits for the work: it is asked why, and a missed deadline is part of the answer.
      const result = note.dryRun ? await work : await Promise.race([work, deadline])
      clearTimeout(timer)
      // What was or would have been injected, for the trace: late work is traced once it ends, as a missed deadline.
      const trace = (outcome: HookOutcome) => {
        if (outcome === 'error') note.outcome = 'unavailable'
        if (outcome === 'deadline') note.outcome = 'deadline'
        const event = payload.event
        const injection: HookDryRun['injection'] = note.namespace !== undefined && note.outcome !== undefined && (event === 'UserPromptSubmit' || event === 'SessionStart')
          ? {
              namespace: note.namespace, session_id: payload.sessionId ?? null, event, prompt: event === 'UserPromptSubmit' ? tracedPrompt(payload.text('prompt')) : null,
              outcome: note.outcome, hits: note.hits, took_ms: Math.round((performance.now() - started) * 100) / 100
            }
          : null
        if (note.dryRun) options.onDryRun?.({ namespace: note.namespace ?? null, project_mode: note.mode, would_save: note.wouldSave === true, injection })
        else if (injection) deps.injections?.record({ ...injection, created_at: new Date().toISOString(), prompt_memory_id: note.promptMemoryId ?? null })
      }
      if (result === DEADLINE) {
        log.warn({ hook_event: payload.event, deadline_ms: deps.deadlineMs }, 'hook missed its deadline; answered {} (saves continue)')
        count(label, 'deadline')
        void work.then(() => trace('deadline'))
        return EMPTY
      }
      const [hookAnswer, outcome] = result
      if (note.dryRun && performance.now() - started > budgetMs && outcome !== 'error') note.outcome = 'deadline'
      if (outcome === 'malformed') log.warn({ hook_event: payload.event }, 'hook payload lacks the field its event needs; answered {}')
      count(label, outcome)
      trace(outcome)
      return hookAnswer
    },
    replay: () => retryBuffer.replay(),
    close: (timeoutMs = 2_000) => retryBuffer.close(timeoutMs)
  }
}

/** A spooled line worth handing to the save (which validates the memory itself): its key keeps a replay one memory. */
function isPendingSave(value: unknown): value is PendingSave {
  const pending = value as Partial<PendingSave> | null
  return typeof pending === 'object' && pending !== null && typeof pending.idempotencyKey === 'string' &&
    typeof pending.input === 'object' && pending.input !== null && typeof pending.input.content === 'string'
}

/** Only a dependency's trouble passes: a refused request stays refused, and a bug would fail the same way again. */
export const isRetryable = isDependencyFailure

/**
 * Retried saves of one hook event are one memory; so are two deliveries of the same event (an `http` and a
 * `command` hook installed side by side). A prompt with a prompt_id is already unique by its source id.
 */
export function hookIdempotencyKey(input: MemoryInput): string {
  const hash = createHash('sha256')
  for (const part of [input.metadata?.hook_event, input.session_id, input.source_id, input.role, input.content]) {
    hash.update(String(part ?? '')).update('\u0000')
  }
  return `claude-code:${hash.digest('hex').slice(0, 40)}`
}

function readPayload(body: unknown): HookPayload | undefined {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) return undefined
  const raw = body as Record<string, unknown>
  if (typeof raw.hook_event_name !== 'string' || raw.hook_event_name === '') return undefined
  const text = (field: string): string | undefined => {
    const value = raw[field]
    return typeof value === 'string' && value.trim() !== '' ? value : undefined
  }
  return {
    event: raw.hook_event_name,
    sessionId: boundedId(raw.session_id),
    cwd: text('cwd'),
    transcriptPath: text('transcript_path'),
    text,
    raw
  }
}

/** Ids as the contract bounds them (1-256 characters); anything else is treated as absent. */
function boundedId(value: unknown): string | undefined {
  return typeof value === 'string' && value.trim() !== '' && value.length <= 256 ? value : undefined
}

/** Longer text is cut rather than refused: the start of a huge prompt is still worth remembering, and the marker says it was cut. */
export function capContent(text: string): { content: string; truncated: boolean } {
  if (text.length <= LIMITS.contentChars) return { content: text, truncated: false }
  const marker = truncationMarker(text.length)
  let end = LIMITS.contentChars - marker.length
  if (/[\uD800-\uDBFF]/.test(text.charAt(end - 1))) end--
  return { content: text.slice(0, end) + marker, truncated: true }
}

/** The prompt as an injection trace keeps it: cut like the saved memory, so a huge prompt is not normalised and stored whole. */
function tracedPrompt(prompt: string | undefined): string | null {
  return prompt === undefined ? null : capContent(prompt).content
}

/** Ends a text cut to the content limit; its length depends only on the original's. */
export function truncationMarker(originalChars: number): string {
  return `\n[truncated by Sage: the first part of ${originalChars} characters]`
}

/** A memory the session digest quoted (`pushed`) or had no room for. */
function digestHit(memory: Memory, pushed: boolean, rule: 'latest_summary' | 'recent_session'): TracedHit {
  return { id: memory.id, injected: pushed, rule: pushed ? rule : 'over_budget' }
}

function contextAnswer(hookEventName: 'UserPromptSubmit' | 'SessionStart', additionalContext: string): HookAnswer {
  return { hookSpecificOutput: { hookEventName, additionalContext } }
}

const comparable = (text: string) => oneLine(text.normalize('NFC')).toLowerCase()
const quote = (memory: Memory) => cutToTokens(oneLine(memory.content), DIGEST_QUOTE_TOKENS).replace(/"/g, "'")

/** Whole lines dropped from the end until the block fits; the heading alone is no context. */
function fitCharacters(text: string, max: number): string {
  if (text.length <= max) return text
  const lines = text.split('\n')
  while (lines.length > 1 && lines.join('\n').length > max) lines.pop()
  return lines.length > 1 ? lines.join('\n') : ''
}
