import { describe, test } from 'node:test'
import assert from 'node:assert/strict'
import fc from 'fast-check'
import { REDACTION_KINDS, redactSecrets, redactSecretsEveryRow } from '../../src/security/redact-secrets.js'
import { secretPatterns } from '../../src/security/secret-patterns.js'

/** Deterministic random-looking credential bodies, built at run time so this file holds no credential-shaped literal. */
function body(length: number, alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789', seed = length): string {
  let state = seed
  let out = ''
  for (let i = 0; i < length; i++) {
    state = (state * 1103515245 + 12345) % 2147483648
    out += alphabet[(state >>> 16) % alphabet.length]
  }
  return out
}
const UPPER_DIGITS = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567'
const BASE64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/'

const redact = (text: string): string => redactSecrets(text).text

/** Asserts `secret` is gone, the expected text remains, and the kind is reported. */
function assertRedacted(input: string, expected: string, kind: string, count = 1): void {
  const result = redactSecrets(input)
  assert.equal(result.text, expected)
  assert.deepEqual(result.redactions, [{ kind, count }])
}

function assertUntouched(input: string): void {
  const result = redactSecrets(input)
  assert.equal(result.text, input)
  assert.deepEqual(result.redactions, [])
}

describe('redactSecrets: <private> spans', () => {
  test('drops a span whole, across lines and in any case, keeping the text around it', () => {
    assertRedacted('before <private>my home\naddress</private> after', 'before  after', 'private')
    assertRedacted('a<PRIVATE>x</Private>b<private >y</private >c', 'abc', 'private', 2)
  })

  test('an unclosed <private> drops everything after it', () => {
    assertRedacted('keep this <private>and not\nany of this', 'keep this ', 'private')
  })

  test('a span that re-forms a tag when dropped is dropped too, so a second pass finds nothing', () => {
    const result = redactSecrets('ok <priv<private>x</private>ate>hidden')
    assert.equal(result.text, 'ok ')
    assert.equal(redact(result.text), result.text)
  })

  test('leaves the word, look-alike tags and a stray closing tag alone', () => {
    assertUntouched('Mark it private. Use <privateKey> or <private-notes>; a stray </private> stays.')
  })
})

describe('redactSecrets: private keys', () => {
  const pem = (label: string): string =>
    `-----BEGIN ${label}-----\n${body(64, BASE64)}\n${body(64, BASE64, 7)}\n${body(20, BASE64, 9)}==\n-----END ${label}-----`

  test('redacts RSA, EC, OpenSSH, encrypted PKCS#8 and PGP blocks whole', () => {
    for (const label of ['RSA PRIVATE KEY', 'EC PRIVATE KEY', 'OPENSSH PRIVATE KEY', 'ENCRYPTED PRIVATE KEY', 'PGP PRIVATE KEY BLOCK']) {
      assertRedacted(`key:\n${pem(label)}\nthen ran ssh`, 'key:\n[REDACTED:private-key]\nthen ran ssh', 'private-key')
    }
  })

  test('redacts a GCP service-account key, whose PEM sits in JSON with \\n escapes', () => {
    const keyId = body(40, '0123456789abcdef')
    const json = [
      '{"type": "service_account", "project_id": "sage-dev",',
      ` "private_key_id": "${keyId}",`,
      ` "private_key": "-----BEGIN PRIVATE KEY-----\\n${body(64, BASE64)}\\n${body(30, BASE64)}=\\n-----END PRIVATE KEY-----\\n",`,
      ' "client_email": "sage@sage-dev.iam.gserviceaccount.com"}'
    ].join('\n')
    const result = redactSecrets(json)
    assert.ok(!result.text.includes(body(64, BASE64)))
    assert.ok(result.text.includes('"private_key": "[REDACTED:private-key]\\n",'))
    // The key id names the key but grants nothing, so it stays searchable.
    assert.ok(result.text.includes(`"private_key_id": "${keyId}"`))
    assert.ok(result.text.includes('"client_email": "sage@sage-dev.iam.gserviceaccount.com"'))
  })

  test('an unclosed key block is redacted to the end of the text', () => {
    assertRedacted(`pasted:\n-----BEGIN RSA PRIVATE KEY-----\n${body(64, BASE64)}\n${body(64, BASE64, 3)}`, 'pasted:\n[REDACTED:private-key]', 'private-key')
  })

  test('leaves public keys, certificates and talk about keys alone', () => {
    assertUntouched(`-----BEGIN PUBLIC KEY-----\n${body(64, BASE64)}\n-----END PUBLIC KEY-----`)
    assertUntouched(`-----BEGIN CERTIFICATE-----\n${body(64, BASE64)}\n-----END CERTIFICATE-----`)
    assertUntouched('Generate a private key with ssh-keygen; never commit the private key file.')
  })
})

describe('redactSecrets: AWS', () => {
  test('redacts long-term and temporary access key ids', () => {
    const id = `AKIA${body(16, UPPER_DIGITS)}`
    assertRedacted(`aws_access_key_id = ${id}`, 'aws_access_key_id = [REDACTED:aws-access-key-id]', 'aws-access-key-id')
    assertRedacted(`id ASIA${body(16, UPPER_DIGITS, 5)}.`, 'id [REDACTED:aws-access-key-id].', 'aws-access-key-id')
  })

  test('redacts secret access keys in env, ini and STS JSON assignments, keeping the name', () => {
    const secret = body(40, BASE64)
    assertRedacted(`AWS_SECRET_ACCESS_KEY=${secret}`, 'AWS_SECRET_ACCESS_KEY=[REDACTED:aws-secret-access-key]', 'aws-secret-access-key')
    assertRedacted(`aws_secret_access_key = ${secret}`, 'aws_secret_access_key = [REDACTED:aws-secret-access-key]', 'aws-secret-access-key')
    assertRedacted(`"SecretAccessKey": "${secret}",`, '"SecretAccessKey": "[REDACTED:aws-secret-access-key]",', 'aws-secret-access-key')
  })

  test('leaves short, embedded and unnamed look-alikes alone', () => {
    assertUntouched(`AKIA${body(15, UPPER_DIGITS)} is one short; XAKIA${body(16, UPPER_DIGITS)} is inside a word`)
    assertUntouched(`a 40-character string on its own: ${body(40, BASE64)}`)
  })
})

describe('redactSecrets: Google Cloud', () => {
  test('redacts API keys', () => {
    assertRedacted(`key=AIza${body(35, BASE64.slice(0, 62) + '_-')}&q=x`, 'key=[REDACTED:gcp-api-key]&q=x', 'gcp-api-key')
  })

  test('leaves AIza words of other lengths alone', () => {
    assertUntouched(`AIza${body(20)} and AIzawhatever in prose`)
  })
})

describe('redactSecrets: Azure', () => {
  test('redacts the account key of a storage connection string and nothing else in it', () => {
    const key = `${body(86, BASE64)}==`
    assertRedacted(
      `DefaultEndpointsProtocol=https;AccountName=sagedev;AccountKey=${key};EndpointSuffix=core.windows.net`,
      'DefaultEndpointsProtocol=https;AccountName=sagedev;AccountKey=[REDACTED:azure-key];EndpointSuffix=core.windows.net',
      'azure-key'
    )
    assertRedacted(`Endpoint=sb://x.servicebus.windows.net/;SharedAccessKeyName=root;SharedAccessKey=${body(44, BASE64)}`,
      'Endpoint=sb://x.servicebus.windows.net/;SharedAccessKeyName=root;SharedAccessKey=[REDACTED:azure-key]', 'azure-key')
  })

  test('redacts a SAS signature, keeping the rest of the URL', () => {
    assertRedacted(`https://a.blob.core.windows.net/c/f?sv=2022-11-02&sp=r&sig=${body(40, BASE64)}%3D`,
      'https://a.blob.core.windows.net/c/f?sv=2022-11-02&sp=r&sig=[REDACTED:azure-key]', 'azure-key')
  })

  test('leaves account names and short values alone', () => {
    assertUntouched('AccountName=sagedev;AccountKey=short;EndpointSuffix=core.windows.net and ?sig=abc')
  })
})

describe('redactSecrets: GitHub and GitLab', () => {
  test('redacts every GitHub token type', () => {
    for (const prefix of ['ghp_', 'gho_', 'ghu_', 'ghs_', 'ghr_']) {
      assertRedacted(`token ${prefix}${body(36)} used`, 'token [REDACTED:github-token] used', 'github-token')
    }
    assertRedacted(`github_pat_${body(22)}_${body(59)}`, '[REDACTED:github-token]', 'github-token')
  })

  test('labels a token by its vendor even when it is assigned to a secret name', () => {
    assertRedacted(`export GITHUB_TOKEN=ghp_${body(36)}`, 'export GITHUB_TOKEN=[REDACTED:github-token]', 'github-token')
  })

  test('redacts GitLab personal access tokens', () => {
    assertRedacted(`glpat-${body(20)} pushed`, '[REDACTED:gitlab-token] pushed', 'gitlab-token')
  })

  test('leaves short or unknown prefixes and gh commands alone', () => {
    assertUntouched(`ghp_short ghx_${body(36)} gh pr create --fill glpat-short`)
  })
})

describe('redactSecrets: Slack', () => {
  test('redacts bot, user and app tokens', () => {
    assertRedacted(`xoxb-${body(12, '0123456789')}-${body(13, '0123456789')}-${body(24)}`, '[REDACTED:slack-token]', 'slack-token')
    assertRedacted(`SLACK=xoxp-${body(12, '0123456789', 3)}-${body(24)}`, 'SLACK=[REDACTED:slack-token]', 'slack-token')
  })

  test('redacts the path of an incoming webhook, keeping its host', () => {
    assertRedacted(`curl https://hooks.slack.com/services/T${body(8, UPPER_DIGITS)}/B${body(8, UPPER_DIGITS)}/${body(24)} -d x`,
      'curl https://hooks.slack.com/services/[REDACTED:slack-webhook] -d x', 'slack-webhook')
  })

  test('leaves example names without digits and bare hosts alone', () => {
    assertUntouched('xoxb-your-bot-token-here; see https://hooks.slack.com/ for setup')
  })
})

describe('redactSecrets: OpenAI, Anthropic and Stripe', () => {
  test('redacts OpenAI legacy and project keys', () => {
    assertRedacted(`OPENAI: sk-${body(48)}`, 'OPENAI: [REDACTED:openai-key]', 'openai-key')
    assertRedacted(`sk-proj-${body(40)}_${body(40, BASE64.slice(0, 62) + '-')}`, '[REDACTED:openai-key]', 'openai-key')
  })

  test('labels Anthropic keys as anthropic-key, not openai-key', () => {
    assertRedacted(`key sk-ant-api03-${body(93, BASE64.slice(0, 62) + '_-')}AA`, 'key [REDACTED:anthropic-key]', 'anthropic-key')
  })

  test('redacts Stripe secret, restricted and webhook keys', () => {
    assertRedacted(`sk_live_${body(24)} rk_live_${body(24)} sk_test_${body(24)} whsec_${body(32)}`,
      '[REDACTED:stripe-key] [REDACTED:stripe-key] [REDACTED:stripe-key] [REDACTED:stripe-key]', 'stripe-key', 4)
  })

  test('leaves kebab-case words, publishable keys and short prefixes alone', () => {
    assertUntouched('sk-learn-is-a-python-machine-learning-library, task-management-service-extra, sk-1234')
    assertUntouched(`pk_live_${body(24)} is publishable; sk_live_ alone is a prefix`)
  })
})

describe('redactSecrets: JWTs and Authorization credentials', () => {
  const jwt = `eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJ${body(40, BASE64.slice(0, 62))}.${body(43, BASE64.slice(0, 62) + '-_')}`

  test('redacts a JWT wherever it appears', () => {
    assertRedacted(`cookie session=${jwt}; Path=/`, 'cookie session=[REDACTED:jwt]; Path=/', 'jwt')
    assertRedacted(`Authorization: Bearer ${jwt}`, 'Authorization: Bearer [REDACTED:jwt]', 'jwt')
  })

  test('redacts Bearer and Basic credentials, keeping the scheme', () => {
    assertRedacted(`curl -H "Authorization: Bearer ${body(32)}" api`, 'curl -H "Authorization: Bearer [REDACTED:bearer-token]" api', 'bearer-token')
    assertRedacted('Authorization: Basic dXNlcjpwYXNzd29yZA==', 'Authorization: Basic [REDACTED:bearer-token]', 'bearer-token')
    // base64 of "jane:pass" has neither digits nor padding, only capitals.
    assertRedacted('basic amFuZTpwYXNzMTIzNDU', 'basic [REDACTED:bearer-token]', 'bearer-token')
  })

  test('leaves dotted identifiers, two-part strings and prose about schemes alone', () => {
    assertUntouched('eyJsonParser.readValues.fromFile(path) and eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0 unsigned')
    assertUntouched('We use Bearer tokens; Basic authentication is disabled. Bearer AuthenticationFlow too.')
  })
})

describe('redactSecrets: passwords in URLs', () => {
  test('redacts only the password, keeping scheme, user, host, port and path', () => {
    assertRedacted('DATABASE_URL=postgres://sage:hunter2@db.internal:5432/sage',
      'DATABASE_URL=postgres://sage:[REDACTED:url-password]@db.internal:5432/sage', 'url-password')
    assertRedacted('redis://:s3cret@localhost:6379/0', 'redis://:[REDACTED:url-password]@localhost:6379/0', 'url-password')
    assertRedacted('mysql://root:p@ss:w0rd@127.0.0.1/app', 'mysql://root:[REDACTED:url-password]@127.0.0.1/app', 'url-password')
  })

  test('a token used as a URL password is labelled by its vendor', () => {
    assertRedacted(`git clone https://x-access-token:ghs_${body(36)}@github.com/o/r.git`,
      'git clone https://x-access-token:[REDACTED:github-token]@github.com/o/r.git', 'github-token')
  })

  test('leaves URLs without a password alone', () => {
    assertUntouched('https://example.com:8443/path?x=1 ssh://git@github.com/o/r git@github.com:o/r.git http://[::1]:8080/ https://user@host/')
    assertUntouched('mail jane@example.com: thanks; see https://docs.example.com/a@b')
  })
})

describe('redactSecrets: secret-named assignments', () => {
  test('redacts the value of env-style assignments, keeping the name, in any case', () => {
    assertRedacted('PASSWORD=hunter2', 'PASSWORD=[REDACTED:secret-assignment]', 'secret-assignment')
    assertRedacted("export DB_Password='p@ss w0rd'", "export DB_Password='[REDACTED:secret-assignment]'", 'secret-assignment')
    assertRedacted('PGPASSWORD=x9 psql -h db', 'PGPASSWORD=[REDACTED:secret-assignment] psql -h db', 'secret-assignment')
    assertRedacted('passwd=letmein1 api_key=abc123 APIKEY=def456 access_key=ghi789 client_secret=jkl0',
      'passwd=[REDACTED:secret-assignment] api_key=[REDACTED:secret-assignment] APIKEY=[REDACTED:secret-assignment] ' +
        'access_key=[REDACTED:secret-assignment] client_secret=[REDACTED:secret-assignment]', 'secret-assignment', 5)
  })

  test('redacts JSON, YAML and code assignments', () => {
    assertRedacted('{"password": "hunter2", "user": "jane"}', '{"password": "[REDACTED:secret-assignment]", "user": "jane"}', 'secret-assignment')
    assertRedacted('db:\n  password: s3cr3t\n  host: db', 'db:\n  password: [REDACTED:secret-assignment]\n  host: db', 'secret-assignment')
    assertRedacted('POSTGRES_PASSWORD: postgres', 'POSTGRES_PASSWORD: [REDACTED:secret-assignment]', 'secret-assignment')
    assertRedacted('const apiKey = "k-123"', 'const apiKey = "[REDACTED:secret-assignment]"', 'secret-assignment')
    assertRedacted("config['token'] = 'abc'", "config['token'] = '[REDACTED:secret-assignment]'", 'secret-assignment')
    assertRedacted("'private_key' => 'xyz',", "'private_key' => '[REDACTED:secret-assignment]',", 'secret-assignment')
    assertRedacted('SECRET_KEY = "django-insecure-abc"', 'SECRET_KEY = "[REDACTED:secret-assignment]"', 'secret-assignment')
    assertRedacted('auth: "jane:pw"', 'auth: "[REDACTED:secret-assignment]"', 'secret-assignment')
    assertRedacted('//registry.npmjs.org/:_authToken=npm_abc123', '//registry.npmjs.org/:_authToken=[REDACTED:secret-assignment]', 'secret-assignment')
    assertRedacted('mysql --password=hunter2 -h db', 'mysql --password=[REDACTED:secret-assignment] -h db', 'secret-assignment')
    assertRedacted('?access_token=abc123&page=2', '?access_token=[REDACTED:secret-assignment]&page=2', 'secret-assignment')
  })

  test('leaves code that reads, compares or types a secret alone', () => {
    assertUntouched(
      [
        'const password = getPassword()',
        'const token = await fetchToken(user)',
        'if (password === "") return; if (token != null) use(token)',
        'interface User { password: string; token?: Token; apiKey: ApiKey }',
        'def login(password: str, token: Optional[str] = None):',
        'f(password=password, token=self.token, secret=config.secret)',
        'password = request.form["password"]',
        'tokens.map(token => token.trim())'
      ].join('\n')
    )
  })

  test('leaves names that merely contain a secret word alone', () => {
    assertUntouched('max_tokens: 1024, "input_tokens": 1500, token_count=5, secretName: db-creds, author: Jane, password_length=12')
    assertUntouched('PWD=/home/jane OLDPWD=/ SSH_AUTH_SOCK=/tmp/ssh-1/agent XAUTHORITY=/home/jane/.Xauthority oauth=enabled')
  })

  test('leaves placeholders, empty values and prose alone', () => {
    assertUntouched('password: ${DB_PASSWORD}\nPASSWORD=$DB_PASSWORD\n"token": ""\npassword: ********\napi_key: <your key>\nsecret: xxxx')
    assertUntouched('Enter your password to continue. The token: it expires after an hour. Password: none set.')
  })
})

describe('redactSecrets: ordinary text', () => {
  test('leaves code, UUIDs, git SHAs, base64 image data and log lines alone', () => {
    assertUntouched(
      [
        'export function recallMemories(query: string, k = 10): Promise<Memory[]> {',
        '  const rows = await this.pool.query(sql, [namespaceId, limit])',
        '}',
        'id 3f1c2a9e-8b7d-4c6e-9f0a-1b2c3d4e5f60 at commit 9fceb02d0ae598e95dc970b74767f19372d61af8 (short 9fceb02)',
        'The logo is data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg== inline.',
        '2024-05-01T12:00:03.123Z INFO request completed reqId=req-42 statusCode=200 url=http://localhost:8080/recall',
        'Rotate the password and the API key every quarter; store secrets in the vault, never in the repo.'
      ].join('\n')
    )
  })

  test('reports each kind once with its count', () => {
    const result = redactSecrets(`PASSWORD=a1 TOKEN=b2 ghp_${body(36)} ghp_${body(36, undefined, 9)}`)
    assert.deepEqual(result.redactions, [
      { kind: 'github-token', count: 2 },
      { kind: 'secret-assignment', count: 2 }
    ])
  })

  test('never re-redacts a marker, so redacting twice equals redacting once', () => {
    for (const text of [
      'password=[REDACTED:secret-assignment]',
      'postgres://u:[REDACTED:url-password]@db/x',
      '[REDACTED:github-token]: foo',
      '"token": "[REDACTED:jwt]"',
      'Authorization: Bearer [REDACTED:bearer-token]'
    ]) {
      assertUntouched(text)
    }
  })
})

describe('redactSecrets: kinds', () => {
  test('lists every kind once, the dropped-span kind included', () => {
    assert.equal(new Set(REDACTION_KINDS).size, REDACTION_KINDS.length)
    for (const kind of ['private', 'private-key', 'aws-access-key-id', 'url-password', 'secret-assignment', 'jwt']) {
      assert.ok(REDACTION_KINDS.includes(kind as (typeof REDACTION_KINDS)[number]), kind)
    }
  })
})

/** Pieces that make secret shapes, near-misses and markers when strung together. */
const SECRET_FRAGMENTS = [
  'password', 'PASSWORD', 'token', 'Token', 'api_key', 'secret', 'auth', 'DB_', '=', ': ', ' = ', '==', ':', '"', "'", '`', ' ', '\n',
  '[', ']', '{', '}', '(', ')', ',', ';', '&', '?', '/', '.', '@', '://', 'postgres', 'user', 'host', 'ghp_', 'github_pat_', 'glpat-',
  'xoxb-', 'sk-', 'sk-ant-', 'sk_live_', 'whsec_', 'AIza', 'AKIA', 'ASIA', 'eyJ', 'ey', 'Bearer ', 'Basic ', 'AccountKey=', 'sig=',
  'hooks.slack.com/services/', '-----BEGIN RSA PRIVATE KEY-----', '-----END RSA PRIVATE KEY-----', '<private>', '</private>', '<priv',
  'ate>', '[REDACTED:jwt]', '[REDACTED:github-token]', '$', '***', 'string', 'true', 'a1', 'Z9', '0', '-', '_', '+', '\\',
  'postgres://user:', 'x://:', '@db', 'eyJhbGciOiJIUzI1NiJ9.', 'eyJzdWIiOiIxIn0.', 'eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.', 'aws_secret_access_key=', '"SecretAccessKey": "',
  'gho_', 'ghu_', 'ghs_', 'ghr_', 'xoxp-', 'xapp-', 'rk_test_', 'sk_test_', 'ABIA', 'ACCA', 'SharedAccessKey=', '&sig=', 'bearer ', 'BASIC ',
  '-----BEGIN OPENSSH PRIVATE KEY-----', 'https://', 'HOOKS.SLACK.COM/services/', 'aws_SECRET_key: ', 'Authorization: '
]
const secretDenseText = fc
  .array(
    fc.oneof(
      fc.constantFrom(...SECRET_FRAGMENTS),
      fc.stringMatching(/^[A-Za-z0-9]{1,45}$/),
      fc.stringMatching(/^[A-Z0-9]{16}$/),
      fc.stringMatching(/^[A-Za-z0-9_-]{35}$/),
      fc.stringMatching(/^[A-Za-z0-9+/]{40}$/)
    ),
    { maxLength: 40 }
  )
  .map((parts) => parts.join(''))

/**
 * Words, identifiers, ids, hashes and data URLs joined by spaces and line breaks. Secret words appear, but never
 * before a lone `=` or `:` (that would be `password = <uuid>`, a real secret shape), and Bearer never before an id.
 */
const BENIGN_WORDS = [
  'the', 'ledger', 'export', 'timed', 'out', 'because', 'query', 'namespace', 'recall', 'memory', 'we', 'decided', 'to', 'paginate',
  'const', 'rows', 'await', 'pool.query(sql)', 'function', 'return', 'if', '(x)', '{', '}', '//', 'npm', 'test', 'src/app.ts',
  'http://localhost:8080/docs', 'https://example.com/a?b=c', 'jane@example.com', 'v1.2.3', '2024-05-01T12:00:03Z', 'statusCode=200',
  'k=10', 'max_tokens:', 'user:', 'host:', 'password', 'token', 'secret', 'rotate', 'API', 'key', 'private', 'sk', 'AKIA', 'eyJ'
]
const benignText = fc
  .array(
    fc.oneof(
      fc.constantFrom(...BENIGN_WORDS),
      fc.uuid(),
      fc.stringMatching(/^[0-9a-f]{7,40}$/),
      fc.integer().map(String),
      fc.base64String({ maxLength: 120 }).map((data) => `data:image/png;base64,${data}`)
    ),
    { maxLength: 60 }
  )
  .chain((words) => fc.array(fc.constantFrom(' ', '\n', '. ', ', '), { minLength: words.length, maxLength: words.length }).map((gaps) => words.map((word, i) => word + gaps[i]).join('')))

const anyUtf16 = fc.string({ unit: fc.integer({ min: 0, max: 0xffff }).map((code) => String.fromCharCode(code)), maxLength: 200 })

describe('redactSecrets: properties', () => {
  test('never throws and reports only known kinds with positive counts, on any string', () => {
    fc.assert(
      fc.property(fc.oneof(fc.string({ unit: 'binary', maxLength: 300 }), anyUtf16, secretDenseText), (text) => {
        const result = redactSecrets(text)
        assert.equal(typeof result.text, 'string')
        for (const { kind, count } of result.redactions) {
          assert.ok(REDACTION_KINDS.includes(kind))
          assert.ok(count > 0)
        }
      }),
      { numRuns: 2000 }
    )
  })

  test('is idempotent: redacting the result again changes nothing', () => {
    fc.assert(
      fc.property(fc.oneof(secretDenseText, anyUtf16), (text) => {
        const once = redactSecrets(text)
        const twice = redactSecrets(once.text)
        assert.equal(twice.text, once.text)
        assert.deepEqual(twice.redactions, [])
      }),
      { numRuns: 3000 }
    )
  })

  test('returns text with no secret-shaped substring unchanged', () => {
    fc.assert(
      fc.property(benignText, (text) => {
        assertUntouched(text)
      }),
      { numRuns: 1000 }
    )
  })

  test('every match of a row holds one of its needles, and a `:` or `=` where the row says so', () => {
    // Needles are looked for in their own case: a row that has them must match in one case too.
    for (const pattern of secretPatterns) if (pattern.needles.length > 0) assert.ok(!pattern.regex.flags.includes('i'), pattern.kind)
    fc.assert(
      fc.property(fc.oneof(secretDenseText, anyUtf16), (text) => {
        for (const pattern of secretPatterns) {
          for (const match of text.matchAll(new RegExp(pattern.regex.source, pattern.regex.flags))) {
            if (pattern.needles.length > 0) assert.ok(pattern.needles.some((needle) => match[0].includes(needle)), `${pattern.kind}: ${match[0]}`)
            if (pattern.needsSeparator) assert.match(match[0], /[:=]/, pattern.kind)
          }
        }
      }),
      { numRuns: 3000 }
    )
  })

  test('skipping the rows whose needles are absent changes nothing: the same text and counts as running every row', () => {
    fc.assert(
      fc.property(fc.oneof(secretDenseText, anyUtf16, benignText), (text) => {
        assert.deepEqual(redactSecrets(text), redactSecretsEveryRow(text))
      }),
      { numRuns: 3000 }
    )
  })

  test('handles NUL, lone surrogates and 100 KB inputs', () => {
    assert.equal(redact('a\u0000b\uD800c\uDFFFd password=\uD800x'), 'a\u0000b\uD800c\uDFFFd password=[REDACTED:secret-assignment]')
    const big = `${'ordinary words and code(x) = y; '.repeat(3200)}PASSWORD=hunter2 ${'<private>'.repeat(10)}`
    const started = performance.now()
    const result = redactSecrets(big)
    const elapsed = performance.now() - started
    assert.ok(result.text.endsWith('PASSWORD=[REDACTED:secret-assignment] '))
    // A catastrophic backtrack would take seconds; the real figure is in bench/redact-secrets.bench.ts.
    assert.ok(elapsed < 500, `took ${elapsed.toFixed(1)} ms`)
  })
})
