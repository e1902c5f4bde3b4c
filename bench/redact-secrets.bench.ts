// µs per redactSecrets call on typical texts: node --import tsx bench/redact-secrets.bench.ts
// (secretlint was measured against it once; the figures are in src/security/redact-secrets.ts.)
import { redactSecrets } from '../src/security/redact-secrets.js'
import { pick, seededRandom as random } from '../test/support/seeded-random.js'
import { createWorkload } from './workload.js'

const CORPUS_SIZE = 200
const WARMUP_MS = 500
const MEASURE_MS = 2_000

/** What developers paste into and get back from coding agents: prose, code, logs, ids, hashes, data URLs. */
const PIECES = [
  'We decided to paginate the ledger export because the query timed out on large namespaces. ',
  'The password is stored hashed; rotate the token when someone leaves. ',
  'const rows = await this.pool.query(sql, [namespaceId, limit])\n',
  'export function recallMemories(query: string, k = 10): Promise<Memory[]> {\n',
  '  if (!memory.embedding) throw new Error(`memory ${memory.id} has no embedding`)\n',
  'interface User { id: string; password: string; token?: Token }\n',
  '{"id": "3f1c2a9e-8b7d-4c6e-9f0a-1b2c3d4e5f60", "max_tokens": 1024, "model": "gpt-4o"}\n',
  'commit 9fceb02d0ae598e95dc970b74767f19372d61af8\nAuthor: Jane Doe <jane@example.com>\n',
  '2024-05-01T12:00:03.123Z INFO  request completed reqId=req-42 statusCode=200 responseTime=3.2ms\n',
  'npm ERR! code ERESOLVE while resolving: sage-memory@0.1.0 (see https://docs.npmjs.com/cli/v10)\n',
  'Open http://localhost:8080/docs or postgres://localhost:5432/sage to check. ',
  'The logo is data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg== inline. ',
  'git checkout -b fix/recall-timeout && npm test -- --grep "recall"\n',
  'Authentication uses Bearer tokens issued by the gateway; Basic authentication is disabled. '
]

/** Built at run time so the source holds no credential-shaped literal. */
const SECRETS = [
  `export GITHUB_TOKEN=ghp_${'a1B2c3D4e5F6g7H8i9J0'.repeat(2).slice(0, 36)}\n`,
  'DATABASE_URL=postgres://sage:hunter2@db.internal:5432/sage\n',
  `{"password": "correct horse battery staple", "api_key": "${'k9X'.repeat(10)}"}\n`,
  `Authorization: Bearer ${'eyJhbGciOiJIUzI1NiJ9'}.${'eyJzdWIiOiIxMjM0In0'}.${'dozjgNryP4J3jVmNHl0w5N'}\n`,
  `aws_access_key_id = AKIA${'Q3EGRSTUVW2XYZ45'}\n`
]

/** Texts of about `length` characters; with `secrets`, that many credentials placed at random points among the pieces. */
function corpus(seed: number, length: number, secrets: number): string[] {
  const next = random(seed)
  const texts: string[] = []
  for (let i = 0; i < CORPUS_SIZE; i++) {
    const chosen = Array.from({ length: secrets }, () => pick(SECRETS, next))
    const parts: string[] = []
    let size = chosen.reduce((total, secret) => total + secret.length, 0)
    while (size < length) {
      const piece = pick(PIECES, next)
      parts.push(piece)
      size += piece.length
    }
    for (const secret of chosen) parts.splice(Math.floor(next() * (parts.length + 1)), 0, secret)
    texts.push(parts.join(''))
  }
  return texts
}

/** µs per call by wall clock and by this process's CPU time: on a busy machine the second is the one-core figure. */
function measure(texts: string[], milliseconds: number): { wall: number; cpu: number } {
  let calls = 0
  let found = 0
  const cpuBefore = process.cpuUsage()
  const started = performance.now()
  while (performance.now() - started < milliseconds) {
    for (const text of texts) found += redactSecrets(text).redactions.length
    calls += texts.length
  }
  const wall = ((performance.now() - started) * 1000) / calls
  const cpu = process.cpuUsage(cpuBefore)
  if (found < 0) console.log(found) // keeps the results alive
  return { wall, cpu: (cpu.user + cpu.system) / calls }
}

/** The memories `npm run bench` saves: prose with the odd identifier, 300-600 characters. */
function benchmarkMemories(): string[] {
  const workload = createWorkload(42)
  return Array.from({ length: CORPUS_SIZE }, () => workload.text())
}

const corpora: Array<[string, string[]]> = [
  ['benchmark memories', benchmarkMemories()],
  ['500 chars, no secrets', corpus(1, 500, 0)],
  ['500 chars, 2 secrets', corpus(2, 500, 2)],
  ['20 KB, no secrets', corpus(3, 20_000, 0)],
  ['20 KB, 10 secrets', corpus(4, 20_000, 10)]
]

// A corpus that is not what its name says would make the figures meaningless.
for (const [name, texts] of corpora) {
  const redacted = texts.filter((text) => redactSecrets(text).redactions.length > 0).length
  const expected = name.includes('no secrets') || name === 'benchmark memories' ? 0 : texts.length
  if (redacted !== expected) throw new Error(`${name}: ${redacted} of ${texts.length} texts had redactions, expected ${expected}`)
}

console.log(`redactSecrets, node ${process.version}, ${CORPUS_SIZE} texts per corpus, ${MEASURE_MS / 1000} s each`)
console.log(`${'µs per call'.padEnd(24)} ${'wall'.padStart(8)} ${'CPU'.padStart(8)}`)
for (const [name, texts] of corpora) {
  measure(texts, WARMUP_MS)
  const { wall, cpu } = measure(texts, MEASURE_MS)
  console.log(`${name.padEnd(24)} ${wall.toFixed(1).padStart(8)} ${cpu.toFixed(1).padStart(8)}`)
}
