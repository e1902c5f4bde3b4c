import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { join } from 'node:path'
import { describe, test } from 'node:test'
import { configWith } from '../../src/config.js'
import { checkExposure } from '../../src/security/check-exposure.js'
import { REPO_ROOT } from '../helper.js'
import { freePort } from '../support/sage-process.js'

const KEY = 'me:0123456789abcdef0123456789abcdef=*:delete'

describe('checkExposure', () => {
  test('a loopback address needs no keys', () => {
    for (const HOST of ['127.0.0.1', '127.1.2.3', '::1', 'localhost', '[::1]']) assert.equal(checkExposure(configWith({ HOST })), undefined, HOST)
  })

  test('any other address without keys is refused, with a message that says how to add one', () => {
    for (const HOST of ['0.0.0.0', '::', '192.168.1.20', 'sage.internal']) {
      assert.throws(() => checkExposure(configWith({ HOST })), (error: Error) => {
        assert.match(error.message, new RegExp(`refusing to serve ${HOST.replace(/\./g, '\\.')} \\(not a loopback address\\) with no API keys`))
        assert.match(error.message, /SAGE_API_KEYS="me:\$\(openssl rand -hex 32\)=\*:delete"/)
        assert.match(error.message, /SAGE_API_KEYS_FILE/)
        assert.match(error.message, /SAGE_ALLOW_OPEN=true/)
        return true
      })
    }
  })

  test('keys, a key file, or SAGE_ALLOW_OPEN=true let it serve; only the last one warns', () => {
    assert.equal(checkExposure(configWith({ HOST: '0.0.0.0', SAGE_API_KEYS: KEY })), undefined)
    assert.equal(checkExposure(configWith({ HOST: '0.0.0.0', SAGE_API_KEYS_FILE: '/etc/sage/keys' })), undefined)
    assert.match(checkExposure(configWith({ HOST: '0.0.0.0', SAGE_ALLOW_OPEN: true })) ?? '', /SAGE_ALLOW_OPEN=true: anyone who reaches this port can read and delete every memory/)
    // A blank SAGE_API_KEYS is no key at all.
    assert.throws(() => checkExposure(configWith({ HOST: '0.0.0.0', SAGE_API_KEYS: '  ' })), /refusing to serve/)
  })
})

describe('the process', () => {
  test('bound to 0.0.0.0 without keys, it exits 1 with the message and never listens', async () => {
    const port = await freePort()
    const child = spawn(process.execPath, [join(REPO_ROOT, 'dist/src/cli.js'), 'serve'], {
      env: { PATH: process.env.PATH ?? '', HOST: '0.0.0.0', PORT: String(port), SAGE_DATA_DIR: ':memory:', LOG_LEVEL: 'warn' },
      stdio: ['ignore', 'pipe', 'pipe']
    })
    let output = ''
    child.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()))
    child.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()))
    const [code] = await once(child, 'exit')
    assert.equal(code, 1, output)
    assert.match(output, /refusing to serve 0\.0\.0\.0 .* with no API keys/)
    assert.match(output, /SAGE_API_KEYS=/)
    await assert.rejects(fetch(`http://127.0.0.1:${port}/health`))
  })
})
