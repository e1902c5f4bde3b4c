import assert from 'node:assert/strict'
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, describe, test } from 'node:test'
import {
  ApiKeyFormatError, bearerMatches, bearerToken, findKey, keysConfigured, loadApiKeys, parseApiKeys, scopesAllow
} from '../../src/security/api-keys.js'

const SECRET_A = 'a'.repeat(32)
const SECRET_B = 'b0:b1=b2/b3+b4_b5~b6'

describe('parseApiKeys', () => {
  test('reads names, scopes and the delete permission of ;-separated entries, and keeps no secret', () => {
    const keys = parseApiKeys(`alice:${SECRET_A}=team-a/*,shared ; ops:${SECRET_B}=*:delete;`, 'SAGE_API_KEYS')
    assert.deepEqual(keys.map(({ name, scopes, canDelete }) => ({ name, scopes, canDelete })), [
      { name: 'alice', scopes: ['team-a/*', 'shared'], canDelete: false },
      { name: 'ops', scopes: ['*'], canDelete: true }
    ])
    // A secret may hold ":" and "=": the name ends at the first ":", the scopes start after the last "=".
    assert.equal(findKey(keys, SECRET_B)?.name, 'ops')
    assert.ok(!JSON.stringify(keys).includes(SECRET_A))
    assert.ok(!JSON.stringify(keys).includes(SECRET_B))
  })

  test('a file: one entry a line, comments and blank lines skipped', () => {
    const keys = parseApiKeys(`# team keys\n\nalice:${SECRET_A}=team-a/*\r\n  # ops\nops:${SECRET_B}=proj:x:delete\n`, '/etc/sage/keys')
    assert.deepEqual(keys.map((k) => [k.name, k.scopes, k.canDelete]), [['alice', ['team-a/*'], false], ['ops', ['proj:x'], true]])
  })

  const invalid: Array<[string, string, RegExp]> = [
    ['no name', `${SECRET_A}=*`, /expected name:secret=scope/],
    ['no scopes', `alice:${SECRET_A}`, /expected name:secret=scope/],
    ['a bad name', `al ice:${SECRET_A}=*`, /key name/],
    ['a short secret', 'alice:short=*', /16-512 printable characters.*openssl rand/],
    ['a secret with a space', `alice:${SECRET_A} x=*`, /the secret of key "alice"/],
    ['an empty scope', `alice:${SECRET_A}=`, /scope ""/],
    ['a star inside a scope', `alice:${SECRET_A}=team-*/x`, /scope "team-\*\/x"/],
    ['a scope with a space', `alice:${SECRET_A}=a,b c`, /scope "b c"/],
    ['two keys of one name', `alice:${SECRET_A}=*;alice:${SECRET_B}=*`, /two keys are named "alice"/],
    ['two keys of one secret', `alice:${SECRET_A}=*;bob:${SECRET_A}=x`, /key "bob" has the same secret/]
  ]
  for (const [name, text, message] of invalid) {
    test(`refuses ${name}, naming the entry but never the secret`, () => {
      assert.throws(() => parseApiKeys(text, 'SAGE_API_KEYS'), (error: Error) => {
        assert.ok(error instanceof ApiKeyFormatError)
        assert.match(error.message, message)
        assert.match(error.message, /SAGE_API_KEYS/)
        assert.ok(!error.message.includes(SECRET_A) && !error.message.includes(SECRET_B), error.message)
        return true
      })
    })
  }

  test('names the line of a file', () => {
    assert.throws(() => parseApiKeys(`alice:${SECRET_A}=*\n\nbob:nope=*`, 'keys.txt'), /keys\.txt line 3:/)
  })
})

describe('scopes, bearer tokens and matching', () => {
  test('* is everything, a trailing * a prefix, anything else one namespace', () => {
    assert.ok(scopesAllow(['*'], 'anything'))
    assert.ok(scopesAllow(['team-a/*'], 'team-a/x'))
    assert.ok(scopesAllow(['team-a/*'], 'team-a/x/y'))
    assert.ok(!scopesAllow(['team-a/*'], 'team-a'))
    assert.ok(!scopesAllow(['team-a/*'], 'team-ab/x'))
    assert.ok(!scopesAllow(['team-a/*'], 'default'))
    assert.ok(scopesAllow(['billing', 'web'], 'web'))
    assert.ok(!scopesAllow(['billing'], 'billing2'))
    assert.ok(!scopesAllow([], 'x'))
  })

  test('bearerToken takes the token of a Bearer header only', () => {
    assert.equal(bearerToken(`Bearer ${SECRET_A}`), SECRET_A)
    assert.equal(bearerToken(`bearer  ${SECRET_A} `), SECRET_A)
    assert.equal(bearerToken(`Basic ${SECRET_A}`), undefined)
    assert.equal(bearerToken('Bearer'), undefined)
    assert.equal(bearerToken('Bearer a b'), undefined)
    assert.equal(bearerToken(undefined), undefined)
  })

  test('findKey finds the one key of a secret and nothing for a near miss', () => {
    const keys = parseApiKeys(`alice:${SECRET_A}=*;bob:${SECRET_B}=x`, 'k')
    assert.equal(findKey(keys, SECRET_A)?.name, 'alice')
    assert.equal(findKey(keys, SECRET_B)?.name, 'bob')
    assert.equal(findKey(keys, SECRET_A.slice(1)), undefined)
    assert.equal(findKey(keys, `${SECRET_A}a`), undefined)
    assert.equal(findKey(keys, ''), undefined)
    assert.equal(findKey([], SECRET_A), undefined)
  })

  test('bearerMatches compares a header with one secret', () => {
    assert.ok(bearerMatches(`Bearer ${SECRET_A}`, SECRET_A))
    assert.ok(!bearerMatches(`Bearer ${SECRET_B}`, SECRET_A))
    assert.ok(!bearerMatches(undefined, SECRET_A))
  })

  test('keys are configured by a non-blank SAGE_API_KEYS or any SAGE_API_KEYS_FILE', () => {
    assert.equal(keysConfigured({}), false)
    assert.equal(keysConfigured({ inline: '  ' }), false)
    assert.equal(keysConfigured({ inline: `a:${SECRET_A}=*` }), true)
    assert.equal(keysConfigured({ file: '/x' }), true)
  })
})

describe('loadApiKeys', () => {
  let dir: string
  after(async () => {
    if (dir) await rm(dir, { recursive: true, force: true })
  })

  test('joins both sources, warns of a world-readable file, and refuses a name used in both', async () => {
    dir = await mkdtemp(join(tmpdir(), 'sage-keys-'))
    const file = join(dir, 'keys')
    await writeFile(file, `bob:${SECRET_B}=b/*:delete\n`)
    await chmod(file, 0o644)
    const loaded = await loadApiKeys({ inline: `alice:${SECRET_A}=a/*`, file })
    assert.deepEqual(loaded.keys.map((k) => k.name), ['alice', 'bob'])
    assert.match(loaded.warning ?? '', /readable by every user/)
    await chmod(file, 0o600)
    assert.equal((await loadApiKeys({ file })).warning, undefined)

    await assert.rejects(loadApiKeys({ inline: `bob:${SECRET_A}=a/*`, file }), /both name a key "bob"|two keys are named "bob"/)
    await assert.rejects(loadApiKeys({ file: join(dir, 'missing') }), /cannot be read: ENOENT/)
  })
})
