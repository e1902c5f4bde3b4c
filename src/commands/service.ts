import { homedir } from 'node:os'
import { join } from 'node:path'
import { PACKAGE_ROOT } from '../package-root.js'
import { SERVICE_NAME } from '../service/service-files.js'
import { installService, realRunner, serviceStatus, uninstallService, type ServiceContext } from '../service/user-service.js'
import type { Command } from './command.js'
import { parseCommandArgs, UsageError } from './parse-command-args.js'

const USAGE = `install [--dry-run]    a systemd user unit (Linux) or a launchd agent (macOS): starts now and at every login
uninstall [--dry-run]  stops it and removes the unit; the environment file and the data stay
status                 what systemd or launchd says, and whether Sage answers /health/ready`

/** `sage-memory service install|uninstall|status`: Sage as the user's own service, restarted when it fails. */
export const service: Command = {
  summary: 'run Sage as your own background service (systemd user unit or launchd agent)',
  usage: USAGE,
  async run(args) {
    const { values, positionals } = parseCommandArgs(args, { 'dry-run': { type: 'boolean', default: false } }, true)
    const [action, ...rest] = positionals
    if (action === undefined) throw new UsageError('name the action: install, uninstall or status')
    if (rest.length > 0) throw new UsageError(`unexpected argument "${rest[0]}"`)
    const context: ServiceContext = {
      platform: process.platform,
      home: homedir(),
      env: process.env,
      command: { node: process.execPath, cli: join(PACKAGE_ROOT, 'dist', 'src', 'cli.js') },
      run: realRunner,
      dryRun: values['dry-run'],
      say: (line) => console.log(line)
    }
    const systemd = process.platform !== 'darwin'
    switch (action) {
      case 'install': {
        const { paths, envFileWritten } = await installService(context)
        if (context.dryRun) return 0
        console.log(`Sage runs as a service: ${paths.definition}`)
        console.log(`  configuration: ${paths.envFile}${envFileWritten ? ' (new)' : ' (kept as it was)'}`)
        console.log(`  data:          ${paths.dataDir}`)
        if (systemd) {
          console.log(`  logs:          journalctl --user -u ${SERVICE_NAME} -f`)
          console.log(`  after editing the configuration: systemctl --user reload ${SERVICE_NAME} (or restart)`)
          console.log('  to keep it running while you are logged out: loginctl enable-linger "$USER"')
        } else {
          console.log(`  logs:          ${paths.logFile}`)
        }
        return 0
      }
      case 'uninstall': {
        const { paths, removed } = await uninstallService(context)
        if (context.dryRun) return 0
        console.log(removed ? `Removed ${paths.definition}; the service is stopped.` : `No service was installed (${paths.definition}).`)
        console.log(`  kept: ${paths.envFile} and ${paths.dataDir}`)
        return 0
      }
      case 'status': {
        const status = await serviceStatus(context)
        console.log(status.installed ? `installed: ${status.paths.definition}` : `not installed (${status.paths.definition} is absent)`)
        const said = (status.manager.stdout || status.manager.stderr).trim()
        if (said) console.log(said)
        console.log(status.ready.status === null ? `${status.ready.url}: no answer (${status.ready.error})` : `${status.ready.url}: ${status.ready.status}`)
        return status.installed && status.ready.status === 200 ? 0 : 1
      }
      default:
        throw new UsageError(`unknown action "${action}"; use install, uninstall or status`)
    }
  }
}
