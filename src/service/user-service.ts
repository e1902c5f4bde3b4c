import { execFile } from 'node:child_process'
import { existsSync } from 'node:fs'
import { chmod, mkdir, readFile, rm, writeFile } from 'node:fs/promises'
import { dirname } from 'node:path'
import { parseEnv } from 'node:util'
import {
  initialEnvFile,
  LAUNCHD_LABEL,
  launchdAgent,
  SERVICE_NAME,
  servicePaths,
  systemdUnit,
  type ServiceCommand,
  type ServicePaths
} from './service-files.js'

/**
 * Installs Sage as the user's own service (no root): writes the files of src/service/service-files.ts and asks
 * systemd (`systemctl --user`) or launchd (`launchctl`) to start it now and at every login.
 */

export interface RunResult {
  code: number
  stdout: string
  stderr: string
}

/** How systemctl and launchctl are called: for real, printed only (--dry-run), or recorded by a test. */
export type Runner = (command: string, args: string[]) => Promise<RunResult>

export interface ServiceContext {
  platform: NodeJS.Platform
  home: string
  env: Record<string, string | undefined>
  command: ServiceCommand
  run: Runner
  /** Print what would be written and run, change nothing. */
  dryRun?: boolean
  /** The numeric user id (launchd's gui/<uid> domain). */
  uid?: number
  say: (line: string) => void
}

export const realRunner: Runner = (command, args) =>
  new Promise((resolve) => {
    execFile(command, args, { encoding: 'utf8' }, (error, stdout, stderr) => {
      const code = error ? (typeof error.code === 'number' ? error.code : 127) : 0
      resolve({ code, stdout, stderr: stderr || (error && code === 127 ? error.message : '') })
    })
  })

function supported(platform: NodeJS.Platform): 'systemd' | 'launchd' {
  if (platform === 'linux') return 'systemd'
  if (platform === 'darwin') return 'launchd'
  throw new Error(`sage-memory service supports Linux (systemd) and macOS (launchd), not ${platform}; run "sage-memory serve" under your own supervisor`)
}

async function must(context: ServiceContext, command: string, args: string[]): Promise<RunResult> {
  if (context.dryRun) {
    context.say(`would run: ${[command, ...args].join(' ')}`)
    return { code: 0, stdout: '', stderr: '' }
  }
  const result = await context.run(command, args)
  if (result.code !== 0) throw new Error(`${[command, ...args].join(' ')} failed (${result.code}): ${(result.stderr || result.stdout).trim()}`)
  return result
}

const launchdTarget = (context: ServiceContext) => `gui/${context.uid ?? process.getuid?.() ?? 501}`

export interface InstallResult {
  paths: ServicePaths
  definition: string
  /** False when an environment file was already there and was kept as it was. */
  envFileWritten: boolean
}

export async function installService(context: ServiceContext): Promise<InstallResult> {
  const manager = supported(context.platform)
  const paths = servicePaths(context.platform, context.home, context.env)
  if (!existsSync(context.command.cli)) throw new Error(`${context.command.cli} does not exist: build Sage first (npm run build)`)
  const definition = manager === 'systemd' ? systemdUnit(context.command, paths) : launchdAgent(context.command, paths)
  const reload = manager === 'systemd' ? `systemctl --user reload ${SERVICE_NAME}` : `launchctl kill HUP ${launchdTarget(context)}/${LAUNCHD_LABEL}`
  const envFileWritten = !existsSync(paths.envFile)

  if (context.dryRun) {
    context.say(`would write ${paths.definition}:\n${definition}`)
    if (envFileWritten) context.say(`would write ${paths.envFile} (mode 600):\n${initialEnvFile(paths, reload)}`)
  } else {
    for (const dir of [dirname(paths.definition), dirname(paths.envFile), paths.dataDir, ...(paths.logFile ? [dirname(paths.logFile)] : [])]) {
      await mkdir(dir, { recursive: true })
    }
    // The store's files are the user's own.
    await chmod(paths.dataDir, 0o700)
    if (envFileWritten) await writeFile(paths.envFile, initialEnvFile(paths, reload), { mode: 0o600, flag: 'wx' })
    await writeFile(paths.definition, definition)
  }

  if (manager === 'systemd') {
    await must(context, 'systemctl', ['--user', 'daemon-reload'])
    await must(context, 'systemctl', ['--user', 'enable', '--now', `${SERVICE_NAME}.service`])
  } else {
    // A second install replaces the running agent: bootout fails harmlessly when none is loaded.
    if (!context.dryRun) await context.run('launchctl', ['bootout', `${launchdTarget(context)}/${LAUNCHD_LABEL}`])
    await must(context, 'launchctl', ['bootstrap', launchdTarget(context), paths.definition])
    await must(context, 'launchctl', ['enable', `${launchdTarget(context)}/${LAUNCHD_LABEL}`])
  }
  return { paths, definition, envFileWritten }
}

export async function uninstallService(context: ServiceContext): Promise<{ paths: ServicePaths; removed: boolean }> {
  const manager = supported(context.platform)
  const paths = servicePaths(context.platform, context.home, context.env)
  const removed = existsSync(paths.definition)
  if (manager === 'systemd') {
    // Not enabled or not loaded is fine: the point is that it no longer runs.
    if (context.dryRun) context.say(`would run: systemctl --user disable --now ${SERVICE_NAME}.service`)
    else await context.run('systemctl', ['--user', 'disable', '--now', `${SERVICE_NAME}.service`])
  } else if (context.dryRun) {
    context.say(`would run: launchctl bootout ${launchdTarget(context)}/${LAUNCHD_LABEL}`)
  } else {
    await context.run('launchctl', ['bootout', `${launchdTarget(context)}/${LAUNCHD_LABEL}`])
  }
  if (context.dryRun) context.say(`would remove ${paths.definition}`)
  else await rm(paths.definition, { force: true })
  if (manager === 'systemd') await must(context, 'systemctl', ['--user', 'daemon-reload'])
  return { paths, removed }
}

export interface ServiceStatus {
  paths: ServicePaths
  installed: boolean
  /** What systemctl status or launchctl print said. */
  manager: RunResult
  /** GET /health/ready at the address the environment file gives, or why it did not answer. */
  ready: { url: string; status: number | null; error?: string }
}

export async function serviceStatus(context: ServiceContext): Promise<ServiceStatus> {
  const manager = supported(context.platform)
  const paths = servicePaths(context.platform, context.home, context.env)
  const installed = existsSync(paths.definition)
  const result =
    manager === 'systemd'
      ? await context.run('systemctl', ['--user', 'status', '--no-pager', `${SERVICE_NAME}.service`])
      : await context.run('launchctl', ['print', `${launchdTarget(context)}/${LAUNCHD_LABEL}`])
  const settings = existsSync(paths.envFile) ? parseEnv(await readFile(paths.envFile, 'utf8')) : {}
  const host = settings.HOST && settings.HOST !== '0.0.0.0' && settings.HOST !== '::' ? settings.HOST : '127.0.0.1'
  const url = `http://${host.includes(':') ? `[${host}]` : host}:${settings.PORT ?? '8765'}/health/ready`
  let ready: ServiceStatus['ready']
  try {
    const response = await fetch(url, { signal: AbortSignal.timeout(3000) })
    await response.arrayBuffer()
    ready = { url, status: response.status }
  } catch (error) {
    const cause = (error as { cause?: { code?: string } }).cause?.code
    ready = { url, status: null, error: cause ?? (error as Error).message }
  }
  return { paths, installed, manager: result, ready }
}
