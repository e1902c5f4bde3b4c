import assert from 'node:assert/strict'
import { existsSync } from 'node:fs'
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { test } from 'node:test'
import {
  addTranscriptStats,
  emptyTranscriptStats,
  findTranscriptFiles,
  parseTranscript,
  readTranscriptFile,
  TRANSCRIPT_MAX_CONTENT,
  type TranscriptMemory,
  type TranscriptParseOptions,
  type TranscriptStats
} from '../../src/client/claude-transcript.js'

// The shared fixture; a copy inside the repository wins so the suite also runs outside this workspace.
const FIXTURE = [
  join(process.cwd(), 'test', 'fixtures', 'claude-code', 'transcript.jsonl'),
  '/work/shared/fixtures/claude-code/transcript.jsonl'
].find((path) => existsSync(path)) ?? 'test/fixtures/claude-code/transcript.jsonl'

const SESSION = '7d1f2c3a-5b6e-4f70-8a9b-0c1d2e3f4a5b'

async function collect(source: AsyncIterable<TranscriptMemory>): Promise<TranscriptMemory[]> {
  const out: TranscriptMemory[] = []
  for await (const memory of source) out.push(memory)
  return out
}

async function parse(
  lines: string[],
  options: TranscriptParseOptions = {}
): Promise<{ memories: TranscriptMemory[]; stats: TranscriptStats }> {
  const stats = emptyTranscriptStats()
  const memories = await collect(parseTranscript(lines, '/t/s.jsonl', { ...options, stats }))
  return { memories, stats }
}

function sumOfOutcomes(stats: TranscriptStats): number {
  return stats.kept + stats.malformed + Object.values(stats.skipped).reduce((a, b) => a + b, 0)
}

let clock = 0
function line(fields: Record<string, unknown>): string {
  clock++
  return JSON.stringify({
    sessionId: 's-1',
    cwd: '/repo',
    gitBranch: 'dev',
    uuid: `u-${clock}`,
    timestamp: new Date(Date.UTC(2026, 0, 1, 0, 0, clock)).toISOString(),
    ...fields
  })
}
const user = (content: unknown, extra: Record<string, unknown> = {}): string =>
  line({ type: 'user', message: { role: 'user', content }, ...extra })
const assistant = (id: string, content: unknown[], extra: Record<string, unknown> = {}): string =>
  line({ type: 'assistant', message: { id, role: 'assistant', model: 'claude-sonnet-4-5', content }, ...extra })

test('the fixture transcript yields exactly the prompts, the merged assistant turns and one tool note', async () => {
  const stats = emptyTranscriptStats()
  const memories = await collect(readTranscriptFile(FIXTURE, { stats }))
  const metadata = { tool: 'claude-code', transcript: FIXTURE, cwd: '/home/dev/src/billing', git_branch: 'main' }
  assert.deepEqual(memories, [
    {
      session_id: SESSION,
      role: 'user',
      content: 'The invoice export times out for large accounts. Can you look at src/export/ledger.ts?',
      source_id: 'a1000000-0000-4000-8000-000000000001',
      created_at: '2026-11-20T09:00:00.000Z',
      metadata
    },
    {
      // msg_011 spans lines 2-4 (thinking, text, tool_use): one turn named after its first line.
      session_id: SESSION,
      role: 'assistant',
      content: 'Let me read the export code first.',
      source_id: 'a1000000-0000-4000-8000-000000000002',
      created_at: '2026-11-20T09:00:02.000Z',
      metadata
    },
    {
      session_id: SESSION,
      role: 'tool',
      content: 'Read src/export/ledger.ts',
      source_id: 'a1000000-0000-4000-8000-000000000004:tools',
      created_at: '2026-11-20T09:00:03.000Z',
      metadata
    },
    {
      session_id: SESSION,
      role: 'assistant',
      content:
        'The export loads the whole ledger into memory. I will switch it to keyset pagination on (account_id, posted_at, id) in pages of 5,000 rows and stream the CSV.',
      source_id: 'a1000000-0000-4000-8000-000000000006',
      created_at: '2026-11-20T09:00:06.000Z',
      metadata
    },
    {
      session_id: SESSION,
      role: 'user',
      content: '发票导出在大账户上还是很慢，PDF 渲染器会一次加载所有明细行。',
      source_id: 'a1000000-0000-4000-8000-000000000009',
      created_at: '2026-11-20T09:31:00.000Z',
      metadata
    }
  ])
  // Skipped: the thinking-only line, the tool result, the summary, the compact boundary, the isMeta /compact.
  assert.deepEqual(stats, {
    lines: 10,
    kept: 5,
    malformed: 0,
    memories: 5,
    skipped: {
      ...emptyTranscriptStats().skipped,
      thinking: 1,
      tool_result: 1,
      summary: 1,
      system: 1,
      meta: 1
    }
  })
})

test('parsing the same file twice gives the same source ids, so a second import creates nothing', async () => {
  const first = (await collect(readTranscriptFile(FIXTURE))).map((m) => m.source_id)
  const second = (await collect(readTranscriptFile(FIXTURE))).map((m) => m.source_id)
  assert.deepEqual(second, first)
  assert.equal(new Set(first).size, first.length)
})

test('without tool notes the fixture gives only the four text memories', async () => {
  const stats = emptyTranscriptStats()
  const memories = await collect(readTranscriptFile(FIXTURE, { stats, includeToolCalls: false }))
  assert.deepEqual(
    memories.map((m) => m.role),
    ['user', 'assistant', 'assistant', 'user']
  )
  assert.equal(stats.skipped.no_text, 1)
  assert.equal(sumOfOutcomes(stats), stats.lines)
})

test('malformed and unknown lines are counted and skipped, and the good lines around them still come through', async () => {
  const { memories, stats } = await parse([
    'not json at all',
    '{"type":"user","message":{"role":"user","content":"cut off',
    '[1,2,3]',
    'null',
    '   ',
    '',
    JSON.stringify({ type: 'file-history-snapshot', messageId: 'x', snapshot: {} }),
    JSON.stringify({ type: 'queue-operation', operation: 'enqueue' }),
    JSON.stringify({ type: 'user', uuid: 'no-message', timestamp: '2026-01-01T00:00:00Z' }),
    JSON.stringify({ type: 'user', message: { role: 'user', content: 'no uuid' }, timestamp: '2026-01-01T00:00:00Z' }),
    JSON.stringify({ type: 'user', uuid: 'bad-time', timestamp: 'yesterday', message: { role: 'user', content: 'x' } }),
    user('still here'),
    assistant('m-1', [{ type: 'text', text: 'and so am I' }, { type: 'server_tool_use', id: 'x' }])
  ])
  assert.deepEqual(
    memories.map((m) => [m.role, m.content]),
    [
      ['user', 'still here'],
      ['assistant', 'and so am I']
    ]
  )
  assert.equal(stats.lines, 11)
  assert.equal(stats.malformed, 7)
  assert.equal(stats.skipped.unknown_type, 2)
  assert.equal(stats.kept, 2)
  assert.equal(sumOfOutcomes(stats), stats.lines)
})

test('lines sharing a message id are one assistant turn, even with tool results between them', async () => {
  const lines = [
    user('fix the flaky test'),
    assistant('m-1', [{ type: 'thinking', thinking: 'hmm', signature: 's' }]),
    assistant('m-1', [{ type: 'text', text: 'First the test.' }]),
    assistant('m-1', [{ type: 'tool_use', id: 't1', name: 'Read', input: { file_path: '/repo/test/a.test.ts' } }]),
    user([{ type: 'tool_result', tool_use_id: 't1', content: 'file body' }]),
    assistant('m-1', [{ type: 'tool_use', id: 't2', name: 'Bash', input: { command: 'npm test\n  -- --grep flaky' } }]),
    user([{ type: 'tool_result', tool_use_id: 't2', content: 'ok' }]),
    assistant('m-1', [{ type: 'text', text: 'Then the fixture.' }]),
    assistant('m-2', [{ type: 'text', text: 'Done: the clock was not mocked.' }])
  ]
  const { memories, stats } = await parse(lines)
  const firstAssistant = JSON.parse(lines[1] as string) as { uuid: string }
  const firstTool = JSON.parse(lines[3] as string) as { uuid: string }
  assert.deepEqual(
    memories.map((m) => [m.role, m.content, m.source_id]),
    [
      ['user', 'fix the flaky test', (JSON.parse(lines[0] as string) as { uuid: string }).uuid],
      ['assistant', 'First the test.\n\nThen the fixture.', firstAssistant.uuid],
      ['tool', 'Read test/a.test.ts\nBash npm test -- --grep flaky', `${firstTool.uuid}:tools`],
      ['assistant', 'Done: the clock was not mocked.', (JSON.parse(lines[8] as string) as { uuid: string }).uuid]
    ]
  )
  assert.equal(stats.skipped.tool_result, 2)
  assert.equal(stats.skipped.thinking, 1)
})

test('a repeated uuid is kept once', async () => {
  const prompt = user('only once')
  const answer = assistant('m-1', [{ type: 'text', text: 'once' }])
  const { memories, stats } = await parse([prompt, answer, prompt, answer])
  assert.deepEqual(
    memories.map((m) => m.content),
    ['only once', 'once']
  )
  assert.equal(stats.skipped.duplicate, 2)
})

test('command wrappers, meta lines, compaction prompts, sidechains and synthetic messages are skipped', async () => {
  const { memories, stats } = await parse([
    user('<command-name>/clear</command-name>\n<command-message>clear</command-message>\n<command-args></command-args>'),
    user('<local-command-stdout>Cleared</local-command-stdout>'),
    user([{ type: 'text', text: '[Request interrupted by user for tool use]' }]),
    user('Caveat: generated by local commands', { isMeta: true }),
    user('This session is being continued from a previous conversation…', { isCompactSummary: true }),
    user('subagent prompt', { isSidechain: true }),
    assistant('m-9', [{ type: 'text', text: 'API Error: 529 overloaded' }], { isApiErrorMessage: true }),
    line({ type: 'assistant', message: { id: 'm-10', model: '<synthetic>', content: [{ type: 'text', text: 'No response requested.' }] } }),
    user('keep this <system-reminder>internal note</system-reminder> part'),
    user([
      { type: 'text', text: 'Look at this screenshot' },
      { type: 'image', source: { type: 'base64', media_type: 'image/png', data: 'AAAA' } }
    ])
  ])
  assert.deepEqual(
    memories.map((m) => m.content),
    ['keep this  part', 'Look at this screenshot']
  )
  assert.equal(stats.skipped.command_noise, 3)
  assert.equal(stats.skipped.meta, 1)
  assert.equal(stats.skipped.compact_summary, 1)
  assert.equal(stats.skipped.sidechain, 1)
  assert.equal(stats.skipped.synthetic, 2)
  assert.equal(sumOfOutcomes(stats), stats.lines)
})

test('sidechains are kept when asked for', async () => {
  const { memories } = await parse([user('subagent prompt', { isSidechain: true })], { includeSidechains: true })
  assert.deepEqual(
    memories.map((m) => m.content),
    ['subagent prompt']
  )
})

test('content longer than the service accepts is cut, without splitting a surrogate pair, and flagged', async () => {
  const long = `${'a'.repeat(TRANSCRIPT_MAX_CONTENT - 1)}😀tail`
  const { memories } = await parse([user(long)])
  const [memory] = memories
  assert.ok(memory)
  assert.equal(memory.content, 'a'.repeat(TRANSCRIPT_MAX_CONTENT - 1))
  assert.equal(memory.metadata.truncated, true)
})

test('a missing sessionId falls back to the file name; tool calls without a telling argument add no note', async () => {
  const stats = emptyTranscriptStats()
  const lines = [
    JSON.stringify({ type: 'user', uuid: 'x1', timestamp: '2026-01-01T00:00:00Z', message: { content: 'hello' } }),
    assistant('m-1', [{ type: 'tool_use', id: 't', name: 'TodoWrite', input: { todos: [] } }])
  ]
  const memories = await collect(parseTranscript(lines, '/p/abc-123.jsonl', { stats }))
  assert.deepEqual(
    memories.map((m) => [m.session_id, m.content, m.metadata]),
    [['abc-123', 'hello', { tool: 'claude-code', transcript: '/p/abc-123.jsonl' }]]
  )
  assert.equal(stats.skipped.no_text, 1)
})

test('readTranscriptFile reads CRLF files with a byte order mark', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'sage-transcript-'))
  t.after(() => rm(dir, { recursive: true, force: true }))
  const path = join(dir, 's.jsonl')
  await writeFile(path, `\uFEFF${user('one')}\r\n${user('two')}\r\n`)
  const memories = await collect(readTranscriptFile(path))
  assert.deepEqual(
    memories.map((m) => m.content),
    ['one', 'two']
  )
})

test('findTranscriptFiles walks a folder for .jsonl files, sorted, and returns a file as is', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'sage-projects-'))
  t.after(() => rm(dir, { recursive: true, force: true }))
  await mkdir(join(dir, '-home-dev-b', 'sub'), { recursive: true })
  await mkdir(join(dir, '-home-dev-a'), { recursive: true })
  const files = [
    join(dir, '-home-dev-b', 'z.jsonl'),
    join(dir, '-home-dev-b', 'sub', 'agent-1.jsonl'),
    join(dir, '-home-dev-a', 'm.jsonl')
  ]
  for (const file of files) await writeFile(file, '')
  await writeFile(join(dir, '-home-dev-a', 'notes.txt'), '')
  await writeFile(join(dir, '-home-dev-a', 'm.jsonl.bak'), '')
  await symlink(join(dir, '-home-dev-a'), join(dir, '-home-dev-b', 'loop'))

  assert.deepEqual(await findTranscriptFiles(dir), [...files].sort())
  assert.deepEqual(await findTranscriptFiles(files[0] as string), [files[0]])
  await assert.rejects(findTranscriptFiles(join(dir, 'missing')), { code: 'ENOENT' })
})

test('addTranscriptStats totals the stats of several files', async () => {
  const a = (await parse([user('one'), 'bad'])).stats
  const b = (await parse([user('two', { isMeta: true })])).stats
  const total = addTranscriptStats(emptyTranscriptStats(), a)
  addTranscriptStats(total, b)
  assert.deepEqual(
    [total.lines, total.kept, total.malformed, total.memories, total.skipped.meta],
    [3, 1, 1, 1, 1]
  )
})
