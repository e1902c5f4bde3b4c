import { createReadStream } from 'node:fs'
import { readdir, stat } from 'node:fs/promises'
import { basename, isAbsolute, join, relative } from 'node:path'
import { createInterface } from 'node:readline'

/**
 * Turns Claude Code transcripts (JSON Lines at `~/.claude/projects/<project>/<session>.jsonl`) into memories.
 * The format is internal to Claude Code and changes between versions, so every line is read defensively:
 * what is not understood is counted and skipped, never thrown.
 */

/** One memory to save; the importer adds the namespace. */
export type TranscriptMemory = {
  session_id: string
  role: 'user' | 'assistant' | 'tool'
  content: string
  /** The uuid of the turn's first line (tool notes: that of their first tool_use line, plus `:tools`). */
  source_id: string
  created_at: string
  metadata: {
    cwd?: string
    git_branch?: string
    tool: 'claude-code'
    /** Path of the transcript file it came from. */
    transcript: string
    /** Present when the content was cut to TRANSCRIPT_MAX_CONTENT characters. */
    truncated?: true
  }
}

export type TranscriptSkipReason =
  | 'duplicate' // a uuid already seen in this file
  | 'sidechain' // subagent lines
  | 'meta' // isMeta lines: expanded commands, caveats
  | 'summary' // type "summary"
  | 'system' // type "system": compact boundaries, notices
  | 'compact_summary' // the "This session is being continued…" prompt written after a compaction
  | 'synthetic' // API error and other assistant messages Claude Code writes itself
  | 'command_noise' // <command-name>, <local-command-stdout>, interruption markers…
  | 'tool_result' // user lines carrying only tool results
  | 'thinking' // assistant lines with only thinking blocks
  | 'no_text' // known line type with nothing worth keeping (images, empty text, tool calls when notes are off)
  | 'unknown_type' // a line type this parser does not know

export type TranscriptStats = {
  /** Non-blank lines read. */
  lines: number
  /** Lines that contributed text to a memory. */
  kept: number
  /** Lines that are not JSON objects, or user/assistant lines without a uuid, message or valid timestamp. */
  malformed: number
  /** Memories yielded. */
  memories: number
  skipped: Record<TranscriptSkipReason, number>
}

export type TranscriptParseOptions = {
  /** Filled in as lines are read; pass one object across files to total them. */
  stats?: TranscriptStats
  /** Add one short `tool` note per assistant turn listing its tool calls ("Read src/x.ts"). Default true. */
  includeToolCalls?: boolean
  /** Keep subagent (sidechain) lines. Default false: the main thread already reports what a subagent found. */
  includeSidechains?: boolean
}

/** The service refuses longer content, and one refused item fails a whole batch. */
export const TRANSCRIPT_MAX_CONTENT = 100_000

const TOOL_ARGUMENT_MAX = 200

const NOISE_TAGS = [
  'command-name',
  'command-message',
  'command-args',
  'command-contents',
  'local-command-stdout',
  'local-command-stderr',
  'local-command-caveat',
  'bash-input',
  'bash-stdout',
  'bash-stderr',
  'system-reminder',
  'user-prompt-submit-hook'
]
const NOISE_ELEMENT = new RegExp(`<(${NOISE_TAGS.join('|')})(?:\\s[^>]*)?>[\\s\\S]*?</\\1>`, 'g')
const INTERRUPTION_MARKER = /\[Request interrupted by user[^\]]*\]/g

export function emptyTranscriptStats(): TranscriptStats {
  return {
    lines: 0,
    kept: 0,
    malformed: 0,
    memories: 0,
    skipped: {
      duplicate: 0,
      sidechain: 0,
      meta: 0,
      summary: 0,
      system: 0,
      compact_summary: 0,
      synthetic: 0,
      command_noise: 0,
      tool_result: 0,
      thinking: 0,
      no_text: 0,
      unknown_type: 0
    }
  }
}

type LineContext = {
  uuid: string
  sessionId: string
  createdAt: string
  cwd?: string
  gitBranch?: string
}

type AssistantTurn = {
  key: string
  first: LineContext
  texts: string[]
  toolCalls: string[]
  firstToolLine?: LineContext
}

/** Yields the memories in a transcript in file order; see TranscriptParseOptions. Never throws on content. */
export async function* parseTranscript(
  lines: AsyncIterable<string> | Iterable<string>,
  filePath: string,
  options: TranscriptParseOptions = {}
): AsyncGenerator<TranscriptMemory> {
  const stats = options.stats ?? emptyTranscriptStats()
  const includeToolCalls = options.includeToolCalls ?? true
  const includeSidechains = options.includeSidechains ?? false
  const fallbackSessionId = basename(filePath).replace(/\.jsonl$/i, '')
  const seenUuids = new Set<string>()
  let turn: AssistantTurn | undefined

  const memory = (
    context: LineContext,
    role: TranscriptMemory['role'],
    text: string,
    sourceId: string
  ): TranscriptMemory => {
    const content = cut(text)
    const metadata: TranscriptMemory['metadata'] = { tool: 'claude-code', transcript: filePath }
    if (context.cwd !== undefined) metadata.cwd = context.cwd
    if (context.gitBranch !== undefined) metadata.git_branch = context.gitBranch
    if (content.length < text.length) metadata.truncated = true
    stats.memories++
    return { session_id: context.sessionId, role, content, source_id: sourceId, created_at: context.createdAt, metadata }
  }

  function* flush(): Generator<TranscriptMemory> {
    if (turn === undefined) return
    const done = turn
    turn = undefined
    if (done.texts.length > 0) yield memory(done.first, 'assistant', done.texts.join('\n\n'), done.first.uuid)
    if (done.toolCalls.length > 0 && done.firstToolLine !== undefined) {
      yield memory(done.firstToolLine, 'tool', done.toolCalls.join('\n'), `${done.firstToolLine.uuid}:tools`)
    }
  }

  for await (const rawLine of lines) {
    const line = rawLine.replace(/^\uFEFF/, '').trim()
    if (line === '') continue
    stats.lines++

    const entry = parseObject(line)
    if (entry === undefined) {
      stats.malformed++
      continue
    }
    const type = entry.type
    if (type === 'summary' || type === 'system') {
      stats.skipped[type]++
      continue
    }
    if (type !== 'user' && type !== 'assistant') {
      stats.skipped.unknown_type++
      continue
    }

    const message = asObject(entry.message)
    const context = lineContext(entry, fallbackSessionId)
    if (message === undefined || context === undefined) {
      stats.malformed++
      continue
    }
    if (seenUuids.has(context.uuid)) {
      stats.skipped.duplicate++
      continue
    }
    seenUuids.add(context.uuid)
    if (entry.isSidechain === true && !includeSidechains) {
      stats.skipped.sidechain++
      continue
    }
    if (entry.isMeta === true) {
      stats.skipped.meta++
      continue
    }

    if (type === 'user') {
      if (entry.isCompactSummary === true) {
        stats.skipped.compact_summary++
        continue
      }
      const prompt = userPrompt(message.content)
      if (typeof prompt !== 'string') {
        stats.skipped[prompt.reason]++
        continue
      }
      stats.kept++
      yield* flush()
      yield memory(context, 'user', prompt, context.uuid)
      continue
    }

    if (entry.isApiErrorMessage === true || message.model === '<synthetic>') {
      stats.skipped.synthetic++
      continue
    }
    const blocks = assistantBlocks(message.content, context.cwd)
    const key = typeof message.id === 'string' ? message.id : context.uuid
    if (turn?.key !== key) {
      yield* flush()
      turn = { key, first: context, texts: [], toolCalls: [] }
    }
    const toolCalls = includeToolCalls ? blocks.toolCalls : []
    if (blocks.texts.length === 0 && toolCalls.length === 0) {
      stats.skipped[blocks.thinkingOnly ? 'thinking' : 'no_text']++
      continue
    }
    stats.kept++
    turn.texts.push(...blocks.texts)
    if (toolCalls.length > 0) {
      turn.toolCalls.push(...toolCalls)
      turn.firstToolLine ??= context
    }
  }
  yield* flush()
}

/** Parses one transcript file; see parseTranscript. Rejects only when the file cannot be read. */
export async function* readTranscriptFile(
  path: string,
  options: TranscriptParseOptions = {}
): AsyncGenerator<TranscriptMemory> {
  const input = createReadStream(path, { encoding: 'utf8' })
  const lines = createInterface({ input, crlfDelay: Infinity })
  try {
    yield* parseTranscript(lines, path, options)
  } finally {
    lines.close()
    input.destroy()
  }
}

/** A file is returned as is; a folder is walked recursively for `*.jsonl`, sorted. Symbolic links are not followed. */
export async function findTranscriptFiles(pathOrDir: string): Promise<string[]> {
  const info = await stat(pathOrDir)
  if (!info.isDirectory()) return [pathOrDir]
  const found: string[] = []
  const walk = async (dir: string): Promise<void> => {
    for (const dirent of await readdir(dir, { withFileTypes: true })) {
      const path = join(dir, dirent.name)
      if (dirent.isDirectory()) await walk(path)
      else if (dirent.isFile() && dirent.name.endsWith('.jsonl')) found.push(path)
    }
  }
  await walk(pathOrDir)
  return found.sort()
}

/** Adds `from` into `into`, e.g. to total the files of one import. */
export function addTranscriptStats(into: TranscriptStats, from: TranscriptStats): TranscriptStats {
  into.lines += from.lines
  into.kept += from.kept
  into.malformed += from.malformed
  into.memories += from.memories
  for (const reason of Object.keys(into.skipped) as TranscriptSkipReason[]) into.skipped[reason] += from.skipped[reason]
  return into
}

type JsonObject = Record<string, unknown>

function parseObject(line: string): JsonObject | undefined {
  try {
    return asObject(JSON.parse(line))
  } catch {
    return undefined
  }
}

function asObject(value: unknown): JsonObject | undefined {
  return typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as JsonObject) : undefined
}

function lineContext(entry: JsonObject, fallbackSessionId: string): LineContext | undefined {
  if (typeof entry.uuid !== 'string' || entry.uuid === '' || typeof entry.timestamp !== 'string') return undefined
  const time = new Date(entry.timestamp)
  if (Number.isNaN(time.getTime())) return undefined
  const context: LineContext = {
    uuid: entry.uuid,
    sessionId: typeof entry.sessionId === 'string' && entry.sessionId !== '' ? entry.sessionId : fallbackSessionId,
    createdAt: time.toISOString()
  }
  if (typeof entry.cwd === 'string') context.cwd = entry.cwd
  if (typeof entry.gitBranch === 'string') context.gitBranch = entry.gitBranch
  return context
}

/** The user's own words, or why the line holds none. */
function userPrompt(content: unknown): string | { reason: TranscriptSkipReason } {
  if (typeof content === 'string') {
    const text = withoutNoise(content)
    if (text !== '') return text
    return { reason: content.trim() === '' ? 'no_text' : 'command_noise' }
  }
  if (!Array.isArray(content)) return { reason: 'no_text' }
  const texts: string[] = []
  let hadToolResult = false
  let hadNoise = false
  for (const item of content) {
    const block = asObject(item)
    if (block?.type === 'tool_result') hadToolResult = true
    if (block?.type !== 'text' || typeof block.text !== 'string') continue
    const text = withoutNoise(block.text)
    if (text !== '') texts.push(text)
    else if (block.text.trim() !== '') hadNoise = true
  }
  if (texts.length > 0) return texts.join('\n\n')
  return { reason: hadToolResult ? 'tool_result' : hadNoise ? 'command_noise' : 'no_text' }
}

function withoutNoise(text: string): string {
  return text.replace(NOISE_ELEMENT, '').replace(INTERRUPTION_MARKER, '').trim()
}

function assistantBlocks(
  content: unknown,
  cwd: string | undefined
): { texts: string[]; toolCalls: string[]; thinkingOnly: boolean } {
  if (typeof content === 'string') {
    const text = content.trim()
    return { texts: text === '' ? [] : [text], toolCalls: [], thinkingOnly: false }
  }
  const texts: string[] = []
  const toolCalls: string[] = []
  let thinking = 0
  let other = 0
  for (const item of Array.isArray(content) ? content : []) {
    const block = asObject(item)
    if (block?.type === 'text' && typeof block.text === 'string' && block.text.trim() !== '') {
      texts.push(block.text.trim())
    } else if (block?.type === 'tool_use' && typeof block.name === 'string') {
      const note = describeToolCall(block.name, asObject(block.input) ?? {}, cwd)
      if (note !== undefined) toolCalls.push(note)
      else other++
    } else if (block?.type === 'thinking' || block?.type === 'redacted_thinking') {
      thinking++
    } else {
      other++
    }
  }
  return { texts, toolCalls, thinkingOnly: thinking > 0 && other === 0 }
}

/** "Read src/export/ledger.ts", "Bash npm test": the one argument that says what the call was about, or nothing. */
function describeToolCall(name: string, input: JsonObject, cwd: string | undefined): string | undefined {
  const pick = (key: string): string | undefined => {
    const value = input[key]
    return typeof value === 'string' && value.trim() !== '' ? value : undefined
  }
  const file = pick('file_path') ?? pick('notebook_path')
  let argument: string | undefined
  if (file !== undefined) argument = relativeTo(cwd, file)
  else if (pick('command') !== undefined) argument = pick('command')
  else if (pick('pattern') !== undefined) {
    const where = pick('path')
    argument = where === undefined ? pick('pattern') : `${pick('pattern')} in ${relativeTo(cwd, where)}`
  } else argument = pick('url') ?? pick('query') ?? pick('description') ?? pick('path')
  if (argument === undefined) return undefined
  const oneLine = argument.replace(/\s+/g, ' ').trim()
  return `${name} ${oneLine.length > TOOL_ARGUMENT_MAX ? `${cut(oneLine, TOOL_ARGUMENT_MAX - 1)}…` : oneLine}`
}

function relativeTo(cwd: string | undefined, path: string): string {
  if (cwd === undefined || !isAbsolute(path)) return path
  const rel = relative(cwd, path)
  return rel === '' || rel.startsWith('..') || isAbsolute(rel) ? path : rel
}

/** Cuts to `max` UTF-16 units without splitting a surrogate pair. */
function cut(text: string, max = TRANSCRIPT_MAX_CONTENT): string {
  if (text.length <= max) return text
  const end = /[\uD800-\uDBFF]/.test(text.charAt(max - 1)) ? max - 1 : max
  return text.slice(0, end)
}
