// Deterministic memories and queries for the benchmark: English prose from a fixed vocabulary, with identifiers.
import { tokenize } from '../src/text/tokenize.js'
import { pick, seededRandom } from '../test/support/seeded-random.js'

/** Most frequent first: sampling follows Zipf's law over this order, as words in real prose do. */
const PROSE = (
  'the to and a of in is it that for on with this as be we was are not have but at from or by so if an can ' +
  'will use should when all there what which would one now need more just then than also because only into been ' +
  'some new do out other after before make still first like about get both each time again same where here ' +
  'change test run fix error code file data query request user function value call server build check update add ' +
  'work case result list type issue problem config field step name table index memory session version path page ' +
  'return failed using without instead since while until already once every never always maybe probably seems ' +
  'database cache queue worker job retry timeout client response header token namespace ledger export import ' +
  'pagination cursor offset limit slow fast latency throughput leak connection pool transaction commit rollback ' +
  'lock deadlock replica primary backup restore environment variable secret key rotate rotation module package ' +
  'dependency upgrade release branch merge conflict review approve feature flag rollout monitor metric alert ' +
  'dashboard log trace span decided avoid keep remove delete create read write parse parser format output input ' +
  'stream buffer directory folder schema migration column row vector embedding search recall prompt answer agent ' +
  'hook save decision summary context budget score rank filter tag metadata batch insert select join scan plan ' +
  'cost estimate analyze vacuum autovacuum bloat statistics histogram percentile p99 p50 benchmark load spike ' +
  'burst backpressure concurrency parallel thread process signal shutdown graceful restart crash panic exception ' +
  'stack frame handler route plugin middleware validation serializer payload body json yaml csv encoding utf8 ' +
  'unicode normalize tokenizer stemmer language english chinese japanese korean locale timezone timestamp date ' +
  'clock drift skew sync async await promise callback event emitter listener socket port address host dns tls ' +
  'certificate handshake proxy gateway ingress egress firewall network latency bandwidth packet retry backoff ' +
  'jitter circuit breaker fallback degrade health readiness liveness probe container image docker compose ' +
  'kubernetes pod node cluster deploy deployment rollback canary blue green staging production local developer ' +
  'laptop ci pipeline runner artifact cache layer registry tag digest checksum hash sha256 signature verify ' +
  'permission role scope owner admin account tenant project team organization billing invoice payment refund ' +
  'customer order cart checkout inventory product price discount coupon currency tax shipping address email ' +
  'notification template render view component state store reducer action selector hook effect memo ref prop ' +
  'style theme layout grid flex responsive mobile desktop browser cookie storage localstorage indexeddb worker ' +
  'wasm binary compile compiler transpile bundle bundler minify sourcemap debug debugger breakpoint profiler ' +
  'flamegraph sampling allocation garbage collector heap snapshot regression flaky intermittent reproduce ' +
  'reproduction minimal example snippet comment docstring readme changelog license contributor maintainer ' +
  'discussion proposal rfc design tradeoff constraint requirement assumption invariant edge corner boundary ' +
  'overflow underflow precision rounding float integer decimal string array object map set tuple record enum ' +
  'interface generic union intersection nullable optional default required deprecated legacy refactor rename ' +
  'extract inline split merge simplify optimize tune benchmark measure profile investigate diagnose triage ' +
  'escalate incident postmortem outage degradation recovery failover replication lag wal checkpoint archive ' +
  'snapshot partition shard sharding tenant isolation quota rate limiter throttle window bucket counter gauge'
).split(' ')

/** Parts that identifiers are built from: what a codebase names its functions, constants, files and errors. */
const NOUNS = (
  'ledger export page cursor pool query memory session user token cache queue job worker retry config schema ' +
  'migration index vector embedding recall prompt hook batch invoice payment order cart route plugin handler ' +
  'socket stream buffer client server request response header tenant account key secret metric alert trace span'
).split(' ')
const VERBS = 'get set create update delete load save fetch parse render build flush rotate retry validate encode decode sync'.split(' ')
const EXTENSIONS = ['ts', 'js', 'py', 'go', 'sql', 'rs']

/** Cumulative Zipf weights over `count` ranks; a binary search over them draws a rank. */
function zipfTable(count: number, exponent: number): Float64Array {
  const table = new Float64Array(count)
  let sum = 0
  for (let rank = 0; rank < count; rank++) {
    sum += 1 / (rank + 1) ** exponent
    table[rank] = sum
  }
  for (let rank = 0; rank < count; rank++) table[rank] = (table[rank] as number) / sum
  return table
}

function drawRank(table: Float64Array, next: () => number): number {
  const target = next()
  let low = 0
  let high = table.length - 1
  while (low < high) {
    const middle = (low + high) >>> 1
    if ((table[middle] as number) < target) low = middle + 1
    else high = middle
  }
  return low
}

const capitalize = (word: string) => word.charAt(0).toUpperCase() + word.slice(1)

/** A few thousand identifiers in the shapes code has: camelCase, CONSTANTS, paths, error codes. */
function buildIdentifiers(next: () => number, count: number): string[] {
  const seen = new Set<string>()
  while (seen.size < count) {
    const a = pick(NOUNS, next)
    const b = pick(NOUNS, next)
    const verb = pick(VERBS, next)
    const shape = next()
    if (shape < 0.5) seen.add(`${verb}${capitalize(a)}${next() < 0.5 ? capitalize(b) : ''}`)
    else if (shape < 0.7) seen.add(`${a.toUpperCase()}_${b.toUpperCase()}_${pick(['MAX', 'MIN', 'TIMEOUT', 'SIZE', 'URL'], next)}`)
    else if (shape < 0.9) seen.add(`src/${a}/${b}-${verb}.${pick(EXTENSIONS, next)}`)
    else seen.add(`ERR_${a.toUpperCase()}_${verb.toUpperCase()}_${Math.floor(next() * 90) + 10}`)
  }
  return [...seen]
}

export interface MemoryItem {
  namespace: string
  session_id: string
  role: 'user' | 'assistant'
  content: string
  metadata: Record<string, string>
  tags: string[]
  created_at: string
}

/** The filters filtered recall is measured with, and how many memories of a namespace each lets through. */
export interface RecallFilters {
  filters: Record<string, Record<string, unknown>>
  matching: Record<string, number>
}

/** Memories are a minute apart, from this time on: a time range selects a known stretch of them. */
const FIRST_MEMORY_AT = Date.parse('2026-01-01T00:00:00Z')
/** One memory in this many carries the rare tag. */
const RARE_TAG_EVERY = 100
/** Memories name one of this many branches in their metadata. */
const BRANCHES = 20

export interface Workload {
  /** 300 to 600 characters of prose with the odd identifier. */
  text(): string
  /** One memory as a hook would save it: a turn of a session in a project directory. */
  item(namespace: string): MemoryItem
  /**
   * 2 to 6 consecutive words of a text this workload produced, so every query shares words with stored memories;
   * never the same query twice, so the service's recall cache cannot answer any of them.
   */
  query(): string
  /** A role, a tag one memory in a hundred carries, a metadata value and a time range, over `namespace` as it stands. */
  recallFilters(namespace: string): RecallFilters
}

/** The same seed gives the same texts in the same order, so two runs store and query the same corpus. */
export function createWorkload(seed: number): Workload {
  const next = seededRandom(seed)
  const identifiers = buildIdentifiers(seededRandom(seed ^ 0x5eed), 3_000)
  const proseRanks = zipfTable(PROSE.length, 1.0)
  const identifierRanks = zipfTable(identifiers.length, 0.6)
  /** Recent texts that queries are cut from; bounded, and refreshed as more is written. */
  const recent: string[] = []
  let counter = 0
  const asked = new Set<string>()

  function text(): string {
    const length = 300 + Math.floor(next() * 300)
    let out = ''
    let sentenceStart = true
    while (out.length < length) {
      const word = next() < 0.05 ? (identifiers[drawRank(identifierRanks, next)] as string) : (PROSE[drawRank(proseRanks, next)] as string)
      out += sentenceStart ? capitalize(word) : word
      sentenceStart = next() < 0.08
      out += sentenceStart ? '. ' : next() < 0.06 ? ', ' : ' '
    }
    const trimmed = out.slice(0, length).replace(/[\s,.]+\S*$/, '').trim() + '.'
    if (recent.length < 2_000) recent.push(trimmed)
    else recent[Math.floor(next() * recent.length)] = trimmed
    return trimmed
  }

  /** The turns saved in each namespace, for counting what a filter lets through. */
  const turnsOf = new Map<string, number[]>()

  function item(namespace: string): MemoryItem {
    const turn = counter++
    const turns = turnsOf.get(namespace) ?? []
    turns.push(turn)
    turnsOf.set(namespace, turns)
    const tags = turn % 7 === 0 ? ['decision'] : []
    if (turn % RARE_TAG_EVERY === 0) tags.push('rare')
    return {
      namespace,
      session_id: `session-${Math.floor(turn / 40)}`,
      role: turn % 2 === 0 ? 'user' : 'assistant',
      content: text(),
      metadata: { cwd: `/home/dev/${namespace}`, tool: 'claude-code', branch: `feature-${turn % BRANCHES}` },
      tags,
      created_at: new Date(FIRST_MEMORY_AT + turn * 60_000).toISOString()
    }
  }

  function recallFilters(namespace: string): RecallFilters {
    const turns = turnsOf.get(namespace) ?? []
    // A stretch of about a hundredth of the namespace, ending a tenth of the way back from its newest memory.
    const last = turns.at(-1) ?? 0
    const until = last - Math.floor(turns.length / 10)
    const since = until - Math.max(10, Math.floor((last - (turns[0] ?? 0)) / 100))
    const at = (turn: number) => new Date(FIRST_MEMORY_AT + turn * 60_000).toISOString()
    const count = (keep: (turn: number) => boolean) => turns.filter(keep).length
    return {
      filters: {
        'role user': { role: ['user'] },
        'tag held by 1%': { tags: ['rare'] },
        'metadata value (5%)': { metadata: { branch: 'feature-7' } },
        'time range (1%)': { since: at(since), until: at(until) }
      },
      matching: {
        'role user': count((turn) => turn % 2 === 0),
        'tag held by 1%': count((turn) => turn % RARE_TAG_EVERY === 0),
        'metadata value (5%)': count((turn) => turn % BRANCHES === 7),
        'time range (1%)': count((turn) => turn >= since && turn <= until)
      }
    }
  }

  function query(): string {
    if (recent.length === 0) text()
    for (;;) {
      const words = (pick(recent, next) as string).replace(/[.,](\s|$)/g, '$1').split(' ')
      const size = 2 + Math.floor(next() * 5)
      const start = Math.floor(next() * Math.max(1, words.length - size))
      const query = words.slice(start, start + size).join(' ')
      // A query of stop words alone has no terms for the text side; users do not ask those.
      if (tokenize(query).length > 0 && !asked.has(query)) {
        asked.add(query)
        return query
      }
    }
  }

  return { text, item, query, recallFilters }
}

/**
 * Claude Code's `UserPromptSubmit` payloads from a project folder named after `namespace`, one session, each
 * prompt a question around words the project's memories hold (two queries of the workload).
 */
export function userPromptSubmits(workload: Workload, namespace: string, sessionId: string): () => Record<string, unknown> {
  let sent = 0
  return () => ({
    session_id: sessionId,
    transcript_path: `/home/dev/.claude/projects/-home-dev-${namespace}/${sessionId}.jsonl`,
    cwd: `/home/dev/${namespace}`,
    permission_mode: 'default',
    hook_event_name: 'UserPromptSubmit',
    prompt_id: `${sessionId}-${sent++}`,
    prompt: `What did we decide about ${workload.query()}? The ${workload.query()} part still looks wrong to me.`
  })
}
