/**
 * The credentials redactSecrets looks for, one row per shape, applied in table order.
 *
 * Each row's regex is global; its match ends with the secret, which is the named group `secret`
 * or, without one, the whole match. Text before the secret in the match (a name, a scheme, a
 * "Bearer ") is kept; context after the secret is a lookahead so it is never consumed. No row takes
 * a `[REDACTED:kind]` marker for a secret: value classes exclude `[`, or the row skips a value that
 * starts with or holds a marker, which is what makes a second pass a no-op.
 *
 * Order matters: whole blocks first, then vendor tokens with a fixed prefix (so a token in
 * `GITHUB_TOKEN=ghp_…` is labelled github-token), then the context-based rows (Bearer, URL
 * passwords), and the name-based assignment rows last, which skip values already redacted.
 * Token prefixes and lengths follow the vendors' published formats and secretlint's rules.
 */

/** Characters of a token body: base64url plus `-` and `_`; used for token boundaries. */
const TOKEN_CHAR = 'A-Za-z0-9_-'

/**
 * A token that starts with `prefix` where no token character precedes it (so `xsk-…` inside a longer run does not count).
 * The boundary is checked after the prefix, not before it: a regex that opens with a literal scans faster (BENCHMARKS.md, "Figures behind the code").
 */
function token(prefix: string, body: string, boundaryChars = TOKEN_CHAR): RegExp {
  return new RegExp(`(?:${prefix})(?<![${boundaryChars}](?:${prefix}))${body}`, 'g')
}

/** Requires a digit somewhere in the token run ahead, which random keys have and kebab-case words don't. */
const HAS_DIGIT_AHEAD = `(?=[${TOKEN_CHAR}]*[0-9])`

/**
 * Name endings that mark a value as secret (case-insensitive). A name must end in one of these
 * (`DB_PASSWORD`, `clientSecret`, `x-api-key`, `SECRET_KEY`, `authToken2`), so `max_tokens`, `token_count`,
 * `secretName` and `author` are not secret names.
 */
const SECRET_NAME = String.raw`(?:pass(?:word|wd|phrase)|secret|token|(?:api|access|private|secret|signing|encryption|master)[_-]?key|auth(?:orization)?)\d*`
/** After the name: its closing quote or bracket (`"password":`, `config['token'] =`), then `=`, `:`, `:=` or `=>`, never `==`, `=~` or `::`. */
const ASSIGN = String.raw`["'\`]?\]?[ \t]*(?<separator>:=|=>|=(?![=>~])|:(?![:=]))[ \t]*`

/** Words that follow `name:` or `name =` in code, types and prose ("the token: it expired"), not in credentials. */
const NOT_A_VALUE = new Set([
  'true', 'false', 'null', 'nil', 'none', 'undefined', 'string', 'str', 'number', 'int', 'integer', 'float', 'bool',
  'boolean', 'any', 'unknown', 'object', 'bytes', 'void', 'never', 'required', 'optional', 'await', 'new', 'yield',
  'typeof', 'function', 'async', 'lambda', 'this', 'self', 'super', 'return', 'not', 'redacted', 'empty', 'missing',
  'invalid', 'expired', 'unset', 'hidden', 'yes', 'no', 'on', 'off', 'a', 'an', 'the', 'it', 'its', 'is', 'was', 'are',
  'be', 'we', 'you', 'i', 'they', 'if', 'and', 'or', 'but', 'to', 'in', 'of', 'for', 'with', 'from', 'by', 'at', 'as',
  'that', 'which', 'use', 'see', 'same'
])

export type SecretKind =
  | 'private-key'
  | 'jwt'
  | 'github-token'
  | 'gitlab-token'
  | 'slack-token'
  | 'slack-webhook'
  | 'anthropic-key'
  | 'openai-key'
  | 'stripe-key'
  | 'gcp-api-key'
  | 'aws-access-key-id'
  | 'aws-secret-access-key'
  | 'azure-key'
  | 'bearer-token'
  | 'url-password'
  | 'secret-assignment'

/** Where a candidate was found, for rows whose regex alone cannot tell a secret from a look-alike. */
export interface SecretMatch {
  /** The candidate secret (group `secret`, else the whole match). */
  secret: string
  groups: Record<string, string | undefined>
  /** Offset of the whole match in `text`. */
  offset: number
  text: string
}

export interface SecretPattern {
  kind: SecretKind
  regex: RegExp
  /**
   * Text that every match holds one of, in this case (rows with needles are case-sensitive): a row runs only over
   * text holding one, since running every row over every text was most of redaction's cost. A needle missing here
   * would skip real secrets. Empty for the name-based rows: their names (`key`, `token`, ...) are in most texts.
   */
  needles: readonly string[]
  /** Every match holds `:` or `=` (the name-based rows): text with neither is skipped. */
  needsSeparator?: boolean
  /** Veto for look-alikes; without it every match is a secret. */
  isSecret?: (match: SecretMatch) => boolean
}

/** Whether a value after a secret-looking name is a credential rather than code, a type or a placeholder. */
function isAssignedSecret({ secret, groups, offset, text }: SecretMatch): boolean {
  if (!nameStartsCleanly(text, offset)) return false
  const value = secret
  if (value === '' || NOT_A_VALUE.has(value.toLowerCase())) return false
  // A quoted value already holding a marker was taken by a more specific row, whose kind should stand.
  if (value.includes('[REDACTED:')) return false
  // Placeholders: $VAR, ${VAR}, %VAR%, {{ var }}, <password>, ****, xxxx, ...
  if (/^(?:\$|\{\{|<|%\w+%$|\*+$|[xX]{3,}$|\.{3}$|…$)/.test(value)) return false
  if (groups.quote !== undefined) return true
  // Unquoted: a dotted path is a reference (`self.password`, `config.db.token`), not a value.
  if (/^[A-Za-z_$][\w$]*(?:\.[A-Za-z_$][\w$]*)+$/.test(value)) return false
  if (/^[A-Za-z_$]+$/.test(value)) {
    // A bare word that repeats a secret word is a variable (`token=token`, `password: newPassword`).
    if (/pass(?:word|wd|phrase)|secret|token|key|auth/i.test(value)) return false
    // A capitalised word after `:`, `=>` or a spaced `=` is a type or class (`token: Token`); `NAME=Value` in env files is not.
    const tight = groups.separator === '=' && !/[ \t]/.test(groups.before ?? '')
    if (!tight && /^[A-Z]/.test(value)) return false
  }
  return true
}

/**
 * The keyword must begin a part of the name (after `_ - .`, a quote, or a lower-to-upper camel step),
 * so `oauth` and `bypassword` are not secret names, and a name inside a `[REDACTED:kind]` marker is skipped.
 */
function nameStartsCleanly(text: string, keywordOffset: number): boolean {
  const before = text.charCodeAt(keywordOffset - 1)
  const first = text.charCodeAt(keywordOffset)
  const beforeIsLetter = (before >= 65 && before <= 90) || (before >= 97 && before <= 122)
  const firstIsUpper = first >= 65 && first <= 90
  if (beforeIsLetter && !firstIsUpper) return false
  let start = keywordOffset
  while (start > 0 && /[\w.-]/.test(text[start - 1] as string)) start--
  return !text.startsWith('[REDACTED:', start - 10)
}

/** Bearer/Basic credentials must look random: a digit, `+/=`, or more capitals than a CamelCase word has. */
function looksRandom({ secret }: SecretMatch): boolean {
  return /[0-9+/=]/.test(secret) || (/[a-z]/.test(secret) && (secret.match(/[A-Z]/g)?.length ?? 0) >= 4)
}

export const secretPatterns: readonly SecretPattern[] = [
  {
    // PEM/OpenSSH/PGP private key, whole block; also inside JSON where newlines are `\n` escapes. Unclosed: to the end of the text.
    kind: 'private-key',
    regex: /-----BEGIN[ A-Z0-9]*PRIVATE KEY[ A-Z]*-----[\s\S]*?(?:-----END[ A-Z0-9]*-----|$)/g,
    needles: ['-----BEGIN']
  },
  {
    // JWT: base64url header starting `eyJ` (`{"`), a JSON payload (`{` encodes to `ey`) and the signature.
    kind: 'jwt',
    regex: token('eyJ', `[${TOKEN_CHAR}]{8,}\\.ey[${TOKEN_CHAR}]{8,}\\.[${TOKEN_CHAR}]{8,}`),
    needles: ['eyJ']
  },
  {
    // Classic (ghp_ personal, gho_ OAuth, ghu_ user-to-server, ghs_ server-to-server, ghr_ refresh) and fine-grained PATs.
    kind: 'github-token',
    regex: token('gh[pousr]_', '[A-Za-z0-9]{36,}'),
    needles: ['ghp_', 'gho_', 'ghu_', 'ghs_', 'ghr_']
  },
  {
    kind: 'github-token',
    regex: token('github_pat_', '[A-Za-z0-9_]{22,}'),
    needles: ['github_pat_']
  },
  {
    // GitLab personal access tokens, including the newer dotted routable form.
    kind: 'gitlab-token',
    regex: token('glpat-', `[${TOKEN_CHAR}]{20,}(?:\\.[${TOKEN_CHAR}]+)*`),
    needles: ['glpat-']
  },
  {
    // Slack bot/user/app/refresh tokens (xoxb-, xoxp-, xoxa-, xoxo-, xoxs-, xoxr-) and app-level xapp- tokens.
    kind: 'slack-token',
    regex: token('xox[abposr]-|xapp-', `${HAS_DIGIT_AHEAD}[A-Za-z0-9-]{10,}`),
    needles: ['xox', 'xapp-']
  },
  {
    // Incoming webhook URL: the path is the credential; scheme and host are kept.
    kind: 'slack-webhook',
    regex: /hooks\.slack\.com\/(?:services|workflows|triggers)\/(?<secret>[A-Za-z0-9_/-]{8,})/g,
    needles: ['hooks.slack.com/']
  },
  {
    // Before openai-key, which would also match `sk-ant-…`.
    kind: 'anthropic-key',
    regex: token('sk-ant-', `${HAS_DIGIT_AHEAD}[${TOKEN_CHAR}]{20,}`),
    needles: ['sk-ant-']
  },
  {
    // Legacy sk-… and project/service-account/admin keys (sk-proj-, sk-svcacct-, sk-admin-).
    kind: 'openai-key',
    regex: token('sk-', `${HAS_DIGIT_AHEAD}[${TOKEN_CHAR}]{20,}`),
    needles: ['sk-']
  },
  {
    // Secret and restricted keys, live and test, and webhook signing secrets.
    kind: 'stripe-key',
    regex: token('[sr]k_(?:live|test)_|whsec_', '[A-Za-z0-9]{10,}'),
    needles: ['k_live_', 'k_test_', 'whsec_']
  },
  {
    // Google API key: AIza + 35 base64url characters.
    kind: 'gcp-api-key',
    regex: token('AIza', `[${TOKEN_CHAR}]{35}(?![${TOKEN_CHAR}])`),
    needles: ['AIza']
  },
  {
    // Long-term (AKIA), temporary STS (ASIA) and other credential-bearing access key ids.
    kind: 'aws-access-key-id',
    regex: token('AKIA|ASIA|ABIA|ACCA', '[A-Z0-9]{16}(?![A-Za-z0-9])', 'A-Za-z0-9'),
    needles: ['AKIA', 'ASIA', 'ABIA', 'ACCA']
  },
  {
    // The 40-character secret is only recognisable by its name: aws_secret_access_key, SecretAccessKey, AWS_SECRET_KEY.
    kind: 'aws-secret-access-key',
    regex: /(?:aws_?)?secret_?(?:access_?)?key["']?[ \t]*(?:=>|[:=])[ \t]*["']?(?<secret>[A-Za-z0-9/+=]{40})(?![A-Za-z0-9/+=])/gi,
    needles: [],
    needsSeparator: true,
  },
  {
    // Storage/Service Bus connection strings (AccountKey=, SharedAccessKey=); the next row takes SAS signatures (sig=).
    kind: 'azure-key',
    regex: /Key=(?<=(?:Account|SharedAccess)Key=)(?<secret>[A-Za-z0-9+/]{20,}={0,2})/g,
    needles: ['Key=']
  },
  {
    kind: 'azure-key',
    regex: /[?&;]sig=(?<secret>[A-Za-z0-9%+/=]{20,})/g,
    needles: ['sig=']
  },
  {
    // HTTP Authorization credentials wherever they appear (headers, curl -H, logs). Opens on `earer|asic`: a leading [Bb] scans slower.
    kind: 'bearer-token',
    regex: /(?:earer|asic)(?<=(?:^|[^A-Za-z0-9_-])[Bb](?:earer|asic))[ \t]+(?<secret>[A-Za-z0-9._~+/-]{12,}=*)/g,
    needles: ['earer', 'asic'],
    isSecret: looksRandom
  },
  {
    // scheme://user:password@host: only the password goes; user and host stay useful. `@` in the password is tolerated.
    kind: 'url-password',
    regex: /:\/\/(?<=[A-Za-z0-9+.-]:\/\/)[^\s:/?#@[\]]*:(?!\[REDACTED:)(?<secret>[^\s/?#"'`<>]+)(?=@)/g,
    needles: ['://']
  },
  {
    // NAME="value", 'name': 'value', "name": "value", name = `value`: the quoted value, keeping name and quotes.
    kind: 'secret-assignment',
    regex: new RegExp(`${SECRET_NAME}${ASSIGN}(?<quote>["'\`])(?<secret>(?:(?!\\k<quote>)[^\\\\\\n]|\\\\.)+)(?=\\k<quote>)`, 'gi'),
    needles: [],
    needsSeparator: true,
    isSecret: isAssignedSecret
  },
  {
    // NAME=value, name: value (env, YAML, .npmrc, query strings): an unquoted value up to a delimiter, never a call or index.
    kind: 'secret-assignment',
    regex: new RegExp(`${SECRET_NAME}(?<before>${ASSIGN})(?<secret>[^\\s"'\`,;(){}[\\]<>&]+)(?=$|[\\s,;)}\\]&])`, 'gi'),
    needles: [],
    needsSeparator: true,
    isSecret: isAssignedSecret
  }
]
