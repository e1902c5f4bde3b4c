import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { existsSync } from 'node:fs'
import { mkdir, mkdtemp, readdir, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, test } from 'node:test'
import { promisify } from 'node:util'
import { loadConfig } from '../../src/config.js'
import { launchdAgent, servicePaths, systemdUnit } from '../../src/service/service-files.js'
import { installService, serviceStatus, uninstallService, type Runner, type ServiceContext } from '../../src/service/user-service.js'
import { REPO_ROOT } from '../helper.js'
import { freePort, startSage } from '../support/sage-process.js'

const run = promisify(execFile)
const CLI = join(REPO_ROOT, 'dist/src/cli.js')
const analyzer = ['/usr/bin/systemd-analyze', '/bin/systemd-analyze'].find((path) => existsSync(path))
const inCi = process.env.CI === 'true'

/** Checks a unit as systemd itself reads it, in user mode, without a running systemd (a temp runtime dir). */
async function verifyUnit(unitPath: string, runtimeDir: string): Promise<string> {
  if (!analyzer) {
    if (inCi) throw new Error('systemd-analyze is missing (Debian package systemd, in .ci/run)')
    return 'skipped'
  }
  try {
    const { stdout, stderr } = await run(analyzer, ['--user', 'verify', unitPath], { env: { ...process.env, XDG_RUNTIME_DIR: runtimeDir } })
    return `${stdout}${stderr}`
  } catch (error) {
    const { stdout, stderr } = error as { stdout: string; stderr: string }
    throw new Error(`systemd-analyze verify refused ${unitPath}:\n${stdout}${stderr}`, { cause: error })
  }
}

/** Records what would have been asked of systemctl or launchctl: nothing is enabled on this machine. */
function recordingRunner(calls: string[][]): Runner {
  return async (command, args) => {
    calls.push([command, ...args])
    return { code: 0, stdout: `${command} says fine`, stderr: '' }
  }
}

describe('sage-memory service', () => {
  let root: string
  before(async () => {
    root = await mkdtemp(join(tmpdir(), 'sage-service-'))
  })
  after(() => rm(root, { recursive: true, force: true }))

  const context = async (name: string, overrides: Partial<ServiceContext> = {}) => {
    const home = join(root, name)
    await mkdir(home, { recursive: true })
    const calls: string[][] = []
    const lines: string[] = []
    const ctx: ServiceContext = {
      platform: 'linux',
      home,
      env: {},
      command: { node: process.execPath, cli: CLI },
      run: recordingRunner(calls),
      say: (line) => lines.push(line),
      ...overrides
    }
    return { ctx, calls, lines, home }
  }

  test('install writes a unit systemd accepts, an environment file of mode 600, and enables it; twice keeps the configuration', async () => {
    const { ctx, calls, home } = await context('linux')
    const { paths } = await installService(ctx)
    assert.equal(paths.definition, join(home, '.config/systemd/user/sage-memory.service'))
    assert.equal(paths.envFile, join(home, '.config/sage-memory/sage.env'))
    assert.equal(paths.dataDir, join(home, '.local/share/sage-memory'))
    assert.deepEqual(calls, [['systemctl', '--user', 'daemon-reload'], ['systemctl', '--user', 'enable', '--now', 'sage-memory.service']])

    const unit = await readFile(paths.definition, 'utf8')
    assert.equal(await verifyUnit(paths.definition, await mkdtemp(join(root, 'run-'))).then((out) => out === 'skipped' ? '' : out), '')
    for (const line of [
      `ExecStart=${process.execPath} ${CLI} serve`,
      `WorkingDirectory=${paths.dataDir}`,
      `Environment="SAGE_ENV_FILE=${paths.envFile}"`,
      'ExecReload=/bin/kill -HUP $MAINPID',
      'Restart=on-failure',
      'StandardOutput=journal',
      'StandardError=journal',
      'WantedBy=default.target'
    ]) {
      assert.ok(unit.split('\n').includes(line), `the unit lacks ${line}:\n${unit}`)
    }
    assert.equal((await stat(paths.envFile)).mode & 0o777, 0o600)
    assert.equal((await stat(paths.dataDir)).mode & 0o777, 0o700)
    const config = loadConfig({ SAGE_ENV_FILE: paths.envFile })
    assert.equal(config.SAGE_DATA_DIR, paths.dataDir)
    assert.equal(config.HOST, '127.0.0.1')

    await writeFile(paths.envFile, 'PORT=9999\n')
    const again = await installService(ctx)
    assert.equal(again.envFileWritten, false)
    assert.equal(await readFile(paths.envFile, 'utf8'), 'PORT=9999\n')
  })

  test('odd paths (spaces, %, $) are quoted and escaped so systemd reads them back as they are', async () => {
    const { ctx } = await context('odd')
    const odd = join(root, 'odd', 'a dir with 100% $HOME')
    await mkdir(odd, { recursive: true })
    const node = join(odd, 'node')
    await symlink(process.execPath, node)
    const paths = { definition: join(odd, 'sage-memory.service'), envFile: join(odd, 'sage.env'), dataDir: join(odd, 'data') }
    const unit = systemdUnit({ node, cli: CLI }, paths)
    await writeFile(paths.definition, unit)
    assert.equal(await verifyUnit(paths.definition, await mkdtemp(join(root, 'run-'))).then((out) => out === 'skipped' ? '' : out), '')
    assert.match(unit, /^ExecStart="[^\n]*a dir with 100%% \$HOME\/node" /m)
    assert.match(unit, /^WorkingDirectory=[^\n]*a dir with 100%% \$HOME\/data$/m)
    assert.ok(ctx)
  })

  test('the unit\'s command line serves from the environment file alone, and its reload signal keeps it serving', async () => {
    const { ctx } = await context('serve')
    const { paths } = await installService(ctx)
    const port = await freePort()
    await writeFile(paths.envFile, `HOST=127.0.0.1\nPORT=${port}\nSAGE_DATA_DIR="${paths.dataDir}"\nLOG_LEVEL=info\n`)
    // As systemd starts it: SAGE_ENV_FILE in the environment (startSage adds PATH, and PORT and LOG_LEVEL, which agree).
    const sage = await startSage({ SAGE_ENV_FILE: paths.envFile, PORT: String(port), LOG_LEVEL: 'info' }, 60_000)
    try {
      assert.equal((await fetch(`${sage.url}/health/ready`)).status, 200)
      sage.child.kill('SIGHUP')
      for (let i = 0; i < 100 && !sage.output().includes('configuration reloaded'); i++) await new Promise((resolve) => setTimeout(resolve, 50))
      assert.match(sage.output(), /configuration reloaded/)
      assert.equal((await fetch(`${sage.url}/health`)).status, 200)
      const status = await serviceStatus(ctx)
      assert.equal(status.installed, true)
      assert.deepEqual(status.ready, { url: `http://127.0.0.1:${port}/health/ready`, status: 200 })
    } finally {
      assert.equal(await sage.stop('SIGTERM'), 0, sage.output())
    }
    assert.notDeepEqual(await readdir(paths.dataDir), [], 'the embedded store lives in the data directory')
  })

  test('uninstall stops and removes the unit, keeping the configuration and the data', async () => {
    const { ctx, calls } = await context('remove')
    const { paths } = await installService(ctx)
    calls.length = 0
    const result = await uninstallService(ctx)
    assert.equal(result.removed, true)
    assert.deepEqual(calls, [['systemctl', '--user', 'disable', '--now', 'sage-memory.service'], ['systemctl', '--user', 'daemon-reload']])
    assert.equal(existsSync(paths.definition), false)
    assert.equal(existsSync(paths.envFile), true)
    assert.equal(existsSync(paths.dataDir), true)
  })

  test('XDG_CONFIG_HOME and XDG_DATA_HOME are honoured when absolute, ignored when relative', () => {
    assert.deepEqual(servicePaths('linux', '/home/u', { XDG_CONFIG_HOME: '/cfg', XDG_DATA_HOME: '/share' }), {
      definition: '/cfg/systemd/user/sage-memory.service',
      envFile: '/cfg/sage-memory/sage.env',
      dataDir: '/share/sage-memory'
    })
    assert.equal(servicePaths('linux', '/home/u', { XDG_DATA_HOME: 'relative' }).dataDir, '/home/u/.local/share/sage-memory')
  })

  test('on macOS: a launchd agent restarted when it fails, logging to ~/Library/Logs', async () => {
    const { ctx, calls, home } = await context('mac', { platform: 'darwin', uid: 501 })
    const { paths } = await installService(ctx)
    assert.equal(paths.definition, join(home, 'Library/LaunchAgents/local.sage-memory.plist'))
    assert.deepEqual(calls, [
      ['launchctl', 'bootout', 'gui/501/local.sage-memory'],
      ['launchctl', 'bootstrap', 'gui/501', paths.definition],
      ['launchctl', 'enable', 'gui/501/local.sage-memory']
    ])
    const plist = await readFile(paths.definition, 'utf8')
    const compact = plist.replace(/<!--.*?-->/g, '').replace(/\s+/g, '')
    assert.ok(compact.includes(`<key>ProgramArguments</key><array><string>${process.execPath}</string><string>${CLI}</string><string>serve</string></array>`))
    assert.ok(compact.includes('<key>KeepAlive</key><dict><key>SuccessfulExit</key><false/></dict>'))
    assert.ok(compact.includes('<key>RunAtLoad</key><true/>'))
    assert.ok(compact.includes(`<key>EnvironmentVariables</key><dict><key>SAGE_ENV_FILE</key><string>${paths.envFile.replace(/\s/g, '')}</string></dict>`))
    assert.ok(compact.includes(`<key>StandardErrorPath</key><string>${join(home, 'Library/Logs/sage-memory/sage.log').replace(/\s/g, '')}</string>`))
    // Well formed: every element closed in order.
    const stack: string[] = []
    for (const [, closing, name, selfClosing] of plist.replace(/<\?.*?\?>|<!.*?>/gs, '').matchAll(/<(\/?)([a-z]+)[^>]*?(\/?)>/g)) {
      if (selfClosing) continue
      if (closing) assert.equal(stack.pop(), name)
      else stack.push(name!)
    }
    assert.deepEqual(stack, [])
    assert.ok(launchdAgent({ node: '/a&b', cli: '/c<d' }, paths).includes('<string>/a&amp;b</string>'))
  })

  test('--dry-run prints the unit and the commands and changes nothing', async () => {
    const home = join(root, 'dry')
    await mkdir(home)
    const { stdout } = await run(process.execPath, [CLI, 'service', 'install', '--dry-run'], { env: { PATH: process.env.PATH ?? '', HOME: home } })
    assert.match(stdout, /would write .*\/\.config\/systemd\/user\/sage-memory\.service:\n# Written by sage-memory service install/)
    assert.match(stdout, /would run: systemctl --user enable --now sage-memory\.service/)
    assert.deepEqual(await readdir(home), [])
  })
})
