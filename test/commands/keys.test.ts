import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { join } from 'node:path'
import { after, before, describe, test } from 'node:test'
import { promisify } from 'node:util'
import { parseApiKeys } from '../../src/security/api-keys.js'
import { backends, buildTestApp, REPO_ROOT, type TestStore } from '../helper.js'

const run = promisify(execFile)
const cli = (...args: string[]) => run(process.execPath, [join(REPO_ROOT, 'dist/src/cli.js'), ...args], { env: { PATH: process.env.PATH ?? '' } })

describe('sage-memory keys new', () => {
  let store: TestStore
  before(async () => {
    store = await backends()[0]!.create()
  })
  after(() => store?.drop())

  test('prints an entry Sage accepts, and how the service and the hooks take it', async () => {
    const { stdout, stderr } = await cli('keys', 'new', '--name', 'laptop', '--scope', 'team-a/*,billing', '--delete')
    const entry = stdout.trim()
    const [key] = parseApiKeys(entry, 'stdout')
    assert.equal(key!.name, 'laptop')
    assert.deepEqual(key!.scopes, ['team-a/*', 'billing'])
    assert.equal(key!.canDelete, true)
    const secret = entry.slice(entry.indexOf(':') + 1, entry.lastIndexOf('='))
    assert.ok(secret.length >= 40)
    assert.match(stderr, new RegExp(`SAGE_API_KEYS='${entry.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}'`))
    assert.match(stderr, new RegExp(`export SAGE_API_KEY='${secret}'`))
    assert.match(stderr, /sage-memory hooks install --key-env SAGE_API_KEY/)

    const app = await buildTestApp(store.db, { SAGE_API_KEYS: entry })
    try {
      const res = await app.inject({ method: 'GET', url: '/v1/memories?namespace=billing', headers: { authorization: `Bearer ${secret}` } })
      assert.equal(res.statusCode, 200)
    } finally {
      await app.close()
    }
  })

  test('two keys never share a secret; a bad scope is refused and prints no entry', async () => {
    const [a, b] = await Promise.all([cli('keys', 'new'), cli('keys', 'new')])
    assert.notEqual(a.stdout, b.stdout)
    assert.match(a.stdout.trim(), /^me:[A-Za-z0-9_-]{43}=\*$/)
    await assert.rejects(cli('keys', 'new', '--scope', 'not a scope'), (error: { code: number; stdout: string; stderr: string }) => {
      assert.equal(error.code, 1)
      assert.equal(error.stdout, '')
      assert.match(error.stderr, /scope "not a scope"/)
      return true
    })
  })

  test('sage-memory --version prints the package version', async () => {
    const { version } = (await import(join(REPO_ROOT, 'package.json'), { with: { type: 'json' } })).default as { version: string }
    assert.equal((await cli('--version')).stdout, `sage-memory ${version}\n`)
  })
})
