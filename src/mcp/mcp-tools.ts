import { createHash } from 'node:crypto'
import { Type, type Static, type TSchema } from 'typebox'
import { notFound, validationError } from '../errors.js'
import type { MemoryService } from '../memory/memory-service.js'
import {
  DEFAULTS, DeleteManyQuery, IdParams, LIMITS, ListQuery, ListResult, Memory, MemoryInput, RecallBody, RecallResult, SaveResult, SessionsQuery, SessionsResult,
  type Role
} from '../memory/memory-schemas.js'
import { forbiddenDelete } from '../plugins/app/access.js'
import type { McpCaller } from './mcp-caller.js'

/**
 * The tools an agent sees, in one place: their names, what they are for (the descriptions are what an agent
 * reads to decide when to call one), their arguments (the REST routes' TypeBox schemas, narrowed and described)
 * and what they answer. All data work is the memory service's.
 */

/** What a tool is handed besides its validated arguments. */
export interface ToolCall {
  memories: MemoryService
  caller: McpCaller
  /** The namespace the arguments name, else the caller's; already checked against the key's scope. */
  namespace: string
}

export interface ToolAnswer {
  /** The result as data: the tool's `structuredContent`, matching its output schema. */
  structured: Record<string, unknown>
  /** The same, written for an agent to read. */
  text: string
}

export interface McpTool<Input extends TSchema = TSchema> {
  name: string
  title: string
  description: string
  inputSchema: Input
  outputSchema: TSchema
  annotations: { readOnlyHint: boolean; destructiveHint: boolean; idempotentHint: boolean; openWorldHint: false }
  /** Whether the tool reads or writes a namespace (the caller's scope is checked before it runs). */
  usesNamespace: boolean
  run(args: Static<Input>, call: ToolCall): Promise<ToolAnswer>
}

/** Told to the agent once, when it connects: what Sage is and when to reach for it. */
export const MCP_INSTRUCTIONS =
  "Sage is this project's long-term memory, shared by every session and every agent that works on it. " +
  'Call recall before answering a question about earlier work or changing something that may have a history ' +
  '("what did we decide about retries?"), and remember when the user asks you to, or when a decision, a convention, ' +
  'a working command or a pitfall is settled that a later session should know. Use recent to catch up on what happened lately.'

const NAMESPACE = 'Namespace (a project, a team); leave it out to use this connection\'s: the ?namespace= of the server URL, else the API key\'s own namespace, else "default"'
const described = <T extends TSchema>(schema: T, description: string) => Type.With(schema, { description })

const READ_ONLY = { readOnlyHint: true, destructiveHint: false, idempotentHint: true, openWorldHint: false } as const

/** A summary line's text: one line, cut short (get_memory reads a memory whole). */
const SUMMARY_CHARS = 300
const oneLine = (text: string) => {
  const line = text.replace(/\s+/g, ' ').trim()
  return line.length > SUMMARY_CHARS ? `${line.slice(0, SUMMARY_CHARS - 1)}…` : line
}
const label = (memory: { created_at: string; role: Role; tags: string[] }) =>
  `[${memory.created_at.slice(0, 10)} ${memory.role}${memory.tags.length > 0 ? ` #${memory.tags.join(' #')}` : ''}]`

/**
 * Every save of a tool goes through here, so the service's save entry point is named once. The same text saved
 * again in a namespace answers the first memory (an agent often repeats itself), keyed by a hash of the content.
 */
async function saveMemory(memories: MemoryService, input: MemoryInput): Promise<SaveResult> {
  const idempotencyKey = `mcp:remember:${createHash('sha256').update(input.content).digest('base64url')}`
  const outcome = await memories.save({ memory: input }, { idempotencyKey, kind: 'mcp' })
  // Not asked to queue, so always written.
  return (outcome as { results: SaveResult[] }).results[0]!
}

const RememberInput = Type.Object(
  {
    content: described(MemoryInput.properties.content, 'The fact, decision or note to keep, written to stand on its own: it is read later without this conversation around it'),
    tags: Type.Optional(described(MemoryInput.properties.tags, 'Short labels to filter recalls by, e.g. ["decision", "build"]')),
    metadata: Type.Optional(MemoryInput.properties.metadata),
    session_id: Type.Optional(described(MemoryInput.properties.session_id, 'The agent session this belongs to, if the agent knows its id')),
    namespace: Type.Optional(described(MemoryInput.properties.namespace, NAMESPACE))
  },
  { additionalProperties: false }
)

const remember: McpTool<typeof RememberInput> = {
  name: 'remember',
  title: 'Remember',
  description:
    'Save a fact so later sessions (yours or another agent\'s) can recall it. Use it when the user asks you to remember something, ' +
    'or when something worth keeping beyond this session is settled: a decision and its reason, a convention, a command that works, ' +
    'a pitfall found. One self-contained fact per call. Saving the same text again in a namespace changes nothing and answers the first id.',
  inputSchema: RememberInput,
  outputSchema: Type.Object({ ...SaveResult.properties, namespace: Type.String() }),
  annotations: { readOnlyHint: false, destructiveHint: false, idempotentHint: true, openWorldHint: false },
  usesNamespace: true,
  async run(args, { memories, namespace }) {
    const result = await saveMemory(memories, { ...args, namespace })
    return {
      structured: { ...result, namespace },
      text: result.created
        ? `Remembered in namespace "${namespace}" (id ${result.id}).`
        : `Already remembered in namespace "${namespace}" (id ${result.id}); nothing new was saved.`
    }
  }
}

const RecallInput = Type.Object(
  {
    ...Type.Omit(RecallBody, ['format']).properties,
    query: described(RecallBody.properties.query, 'What to look for, in the words the memory would use: names, identifiers and error messages match best'),
    k: Type.Optional(described(RecallBody.properties.k, 'How many memories at most')),
    mode: Type.Optional(described(RecallBody.properties.mode, 'hybrid (default) matches by words and by embedding; text or vector use one side alone')),
    token_budget: Type.Optional(described(RecallBody.properties.token_budget, 'Tokens the ready-to-read block may take at most')),
    namespace: Type.Optional(described(RecallBody.properties.namespace, NAMESPACE))
  },
  { additionalProperties: false }
)

const recall: McpTool<typeof RecallInput> = {
  name: 'recall',
  title: 'Recall',
  description:
    'Find the memories most relevant to a question, best first, with a block of them ready to read. Use it before answering a ' +
    'question about earlier work ("what did we decide about retries?"), before changing something that may have a history, and ' +
    'whenever the user refers to an earlier session. Filters narrow it to roles, tags, metadata, a session or a time range.',
  inputSchema: RecallInput,
  outputSchema: RecallResult,
  annotations: READ_ONLY,
  usesNamespace: true,
  async run(args, { memories, namespace }) {
    // Hits pass through as the service answers them, so fields it adds reach the agent unchanged.
    const outcome = await memories.recall({ ...args, namespace, format: 'context' })
    const context = outcome.context ?? ''
    const text =
      outcome.results.length === 0
        ? `No memory in namespace "${namespace}" matches "${args.query}".`
        : `${context}\n\nids, best first: ${outcome.results.map((hit) => hit.id).join(', ')}`
    return { structured: { ...outcome, context }, text }
  }
}

const GetMemoryInput = Type.Object({ id: described(IdParams.properties.id, 'The memory\'s id, from recall or recent') }, { additionalProperties: false })

const getMemory: McpTool<typeof GetMemoryInput> = {
  name: 'get_memory',
  title: 'Read a memory',
  description: 'Read one memory whole by its id, with its metadata (recall and recent show long memories cut short).',
  inputSchema: GetMemoryInput,
  outputSchema: Memory,
  annotations: READ_ONLY,
  usesNamespace: false,
  async run(args, { memories, caller }) {
    const memory = await memories.get(args.id)
    // Outside the key's scope looks exactly like missing, as on GET /v1/memories/:id.
    if (!memory || !caller.access.allows(memory.namespace)) throw notFound()
    const session = memory.session_id === null ? '' : `, session "${memory.session_id}"`
    return { structured: memory, text: `${label(memory)} namespace "${memory.namespace}"${session}, id ${memory.id}\n\n${memory.content}` }
  }
}

const ForgetInput = Type.Object(
  {
    id: Type.Optional(described(IdParams.properties.id, 'Forget this one memory')),
    session_id: Type.Optional(described(DeleteManyQuery.properties.session_id, 'Forget every memory of this session')),
    namespace: Type.Optional(described(DeleteManyQuery.properties.namespace, NAMESPACE))
  },
  { additionalProperties: false }
)

const forget: McpTool<typeof ForgetInput> = {
  name: 'forget',
  title: 'Forget',
  description:
    'Delete one memory (id) or every memory of one session (session_id). Use it only when the user asks to forget something, ' +
    'or to remove a memory that is wrong; it cannot be undone, and is recorded in the delete audit. Needs a key that may delete.',
  inputSchema: ForgetInput,
  outputSchema: Type.Object({ deleted: Type.Integer(), namespace: Type.String(), id: Type.Optional(Type.String()), session_id: Type.Optional(Type.String()) }),
  annotations: { readOnlyHint: false, destructiveHint: true, idempotentHint: true, openWorldHint: false },
  usesNamespace: true,
  async run(args, { memories, caller, namespace }) {
    if (!caller.access.canDelete) throw forbiddenDelete()
    if ((args.id === undefined) === (args.session_id === undefined)) throw validationError('give either id (one memory) or session_id (a whole session), not both')
    if (args.id !== undefined) {
      // A memory of another namespace is treated as missing when the call names one.
      const inNamespace = args.namespace === undefined ? () => true : (found: string) => found === namespace
      const by = { keyName: caller.access.keyName, scopes: caller.access.scopes, allows: (found: string) => caller.access.allows(found) && inNamespace(found) }
      const found = await memories.delete(args.id, by)
      if (found === undefined) throw notFound()
      return { structured: { deleted: 1, namespace: found, id: args.id }, text: `Forgot memory ${args.id} of namespace "${found}".` }
    }
    const deleted = await memories.deleteMany(namespace, args.session_id, caller.access)
    return {
      structured: { deleted, namespace, session_id: args.session_id },
      text: deleted === 0
        ? `Session "${args.session_id}" has no memories in namespace "${namespace}"; nothing was forgotten.`
        : `Forgot ${deleted} memor${deleted === 1 ? 'y' : 'ies'} of session "${args.session_id}" in namespace "${namespace}".`
    }
  }
}

const ListSessionsInput = Type.Object(
  { ...SessionsQuery.properties, namespace: Type.Optional(described(SessionsQuery.properties.namespace, NAMESPACE)) },
  { additionalProperties: false }
)

const listSessions: McpTool<typeof ListSessionsInput> = {
  name: 'list_sessions',
  title: 'List sessions',
  description:
    'The sessions of a namespace, most recently active first, each with its number of memories and its first and last times. ' +
    'Use it to find a session to read with recent, or to forget.',
  inputSchema: ListSessionsInput,
  outputSchema: Type.Object({ ...SessionsResult.properties, namespace: Type.String() }),
  annotations: READ_ONLY,
  usesNamespace: true,
  async run(args, { memories, namespace }) {
    const items = await memories.sessions(namespace, args.limit ?? DEFAULTS.sessionsLimit)
    const lines = items.map((s) => `- ${s.session_id}: ${s.count} memor${s.count === 1 ? 'y' : 'ies'}, ${s.first_at} to ${s.last_at}`)
    return {
      structured: { items, namespace },
      text: items.length === 0 ? `Namespace "${namespace}" has no sessions yet.` : [`Sessions of namespace "${namespace}", most recent first:`, ...lines].join('\n')
    }
  }
}

/** An agent reads the page it asks for: fewer, shorter pages than the REST list's. */
const RECENT_LIMIT = { max: 100, default: 20 }

const RecentInput = Type.Object(
  {
    ...ListQuery.properties,
    namespace: Type.Optional(described(ListQuery.properties.namespace, NAMESPACE)),
    session_id: Type.Optional(described(ListQuery.properties.session_id, 'Only this session')),
    limit: Type.Optional(Type.Integer({ minimum: 1, maximum: Math.min(RECENT_LIMIT.max, LIMITS.listLimit), default: RECENT_LIMIT.default, description: 'How many memories, newest first' })),
    cursor: Type.Optional(described(ListQuery.properties.cursor, 'next_cursor of the previous page, for the page after it'))
  },
  { additionalProperties: false }
)

const recent: McpTool<typeof RecentInput> = {
  name: 'recent',
  title: 'Recent memories',
  description:
    'The newest memories of a namespace, or of one session, newest first, a page at a time. Use it to catch up on what happened ' +
    'lately ("what was I doing yesterday?"); to answer a question, use recall.',
  inputSchema: RecentInput,
  outputSchema: Type.Object({ ...ListResult.properties, namespace: Type.String() }),
  annotations: READ_ONLY,
  usesNamespace: true,
  async run(args, { memories, namespace }) {
    const page = await memories.list({ namespace, sessionId: args.session_id, role: args.role, limit: args.limit ?? RECENT_LIMIT.default, cursor: args.cursor })
    const lines = page.items.map((memory) => `- ${label(memory)} ${oneLine(memory.content)} (id ${memory.id})`)
    const more = page.next_cursor === null ? [] : ['', `More: call recent again with cursor "${page.next_cursor}".`]
    return {
      structured: { ...page, namespace },
      text: page.items.length === 0 ? `Namespace "${namespace}" has no memories${args.session_id ? ` in session "${args.session_id}"` : ''}.` : [`Newest memories of namespace "${namespace}":`, ...lines, ...more].join('\n')
    }
  }
}

export const MCP_TOOLS: readonly McpTool[] = [remember, recall, getMemory, forget, listSessions, recent] as McpTool[]

/** The tools as `tools/list` answers them: plain JSON Schema, which TypeBox schemas already are. */
export function mcpToolList() {
  const json = (schema: TSchema) => JSON.parse(JSON.stringify(schema)) as { type: 'object'; [key: string]: unknown }
  return MCP_TOOLS.map((tool) => ({
    name: tool.name,
    title: tool.title,
    description: tool.description,
    inputSchema: json(tool.inputSchema),
    outputSchema: json(tool.outputSchema),
    annotations: { title: tool.title, ...tool.annotations }
  }))
}
