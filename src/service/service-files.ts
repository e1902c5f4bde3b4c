import { join } from 'node:path'
import { userDataDir } from '../user-data-dir.js'

/**
 * What `sage-memory service install` writes: a systemd user unit on Linux, a launchd agent on macOS, and the
 * environment file both point the service at (SAGE_ENV_FILE, so SIGHUP re-reads the same file the start read).
 */

export const SERVICE_NAME = 'sage-memory'
export const LAUNCHD_LABEL = 'local.sage-memory'

export interface ServicePaths {
  /** The unit file or the agent's plist. */
  definition: string
  envFile: string
  /** The service's working directory and embedded store. */
  dataDir: string
  /** launchd only: where the agent's output goes (systemd sends it to the journal). */
  logFile?: string
}

export interface ServiceCommand {
  /** Absolute path of the Node.js binary. */
  node: string
  /** Absolute path of the compiled CLI (dist/src/cli.js). */
  cli: string
}

/** Where the files go: the XDG directories on Linux, ~/Library on macOS. */
export function servicePaths(platform: NodeJS.Platform, home: string, env: Record<string, string | undefined>): ServicePaths {
  if (platform === 'darwin') {
    const support = join(home, 'Library', 'Application Support', SERVICE_NAME)
    return {
      definition: join(home, 'Library', 'LaunchAgents', `${LAUNCHD_LABEL}.plist`),
      envFile: join(support, 'sage.env'),
      dataDir: userDataDir(env, home, platform),
      logFile: join(home, 'Library', 'Logs', SERVICE_NAME, 'sage.log')
    }
  }
  // XDG says a relative value is invalid and must be ignored.
  const xdg = (name: string, fallback: string) => (env[name]?.startsWith('/') ? env[name]! : join(home, fallback))
  return {
    definition: join(xdg('XDG_CONFIG_HOME', '.config'), 'systemd', 'user', `${SERVICE_NAME}.service`),
    envFile: join(xdg('XDG_CONFIG_HOME', '.config'), SERVICE_NAME, 'sage.env'),
    dataDir: userDataDir(env, home, platform)
  }
}

/** One word of an ExecStart= line: quoted when it must be, specifiers escaped, and variables too past the command itself. */
function execArgument(value: string, index: number): string {
  const escaped = index === 0 ? value.replace(/%/g, '%%') : value.replace(/%/g, '%%').replace(/\$/g, '$$$$')
  return /[\s"'\\;]/.test(escaped) ? `"${escaped.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"` : escaped
}

/** A value of a setting that takes a path as it is (WorkingDirectory=): only the specifiers are escaped. */
const pathValue = (value: string) => value.replace(/%/g, '%%')

export function systemdUnit(command: ServiceCommand, paths: ServicePaths): string {
  const environment = `SAGE_ENV_FILE=${paths.envFile}`.replace(/%/g, '%%').replace(/\\/g, '\\\\').replace(/"/g, '\\"')
  return `# Written by sage-memory service install; sage-memory service uninstall removes it.
[Unit]
Description=Sage, the memory service for AI coding agents
After=network.target

[Service]
Type=exec
WorkingDirectory=${pathValue(paths.dataDir)}
# The configuration lives in this file, which Sage reads itself at start and again on reload.
Environment="${environment}"
ExecStart=${[command.node, command.cli, 'serve'].map(execArgument).join(' ')}
ExecReload=/bin/kill -HUP $MAINPID
Restart=on-failure
RestartSec=2
# Longer than a graceful shutdown (SHUTDOWN_GRACE_MS, 10 s by default), so requests in flight may finish.
TimeoutStopSec=30
StandardOutput=journal
StandardError=journal
SyslogIdentifier=${SERVICE_NAME}

[Install]
WantedBy=default.target
`
}

const xml = (text: string) => text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;')

export function launchdAgent(command: ServiceCommand, paths: ServicePaths): string {
  const strings = (values: string[]) => values.map((value) => `\t\t<string>${xml(value)}</string>`).join('\n')
  const log = xml(paths.logFile ?? join(paths.dataDir, 'sage.log'))
  return `<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<!-- Written by sage-memory service install; sage-memory service uninstall removes it. -->
<plist version="1.0">
<dict>
\t<key>Label</key>
\t<string>${LAUNCHD_LABEL}</string>
\t<key>ProgramArguments</key>
\t<array>
${strings([command.node, command.cli, 'serve'])}
\t</array>
\t<key>WorkingDirectory</key>
\t<string>${xml(paths.dataDir)}</string>
\t<key>EnvironmentVariables</key>
\t<dict>
\t\t<key>SAGE_ENV_FILE</key>
\t\t<string>${xml(paths.envFile)}</string>
\t</dict>
\t<key>RunAtLoad</key>
\t<true/>
\t<!-- Started again when it exits with a failure, not after a clean stop. -->
\t<key>KeepAlive</key>
\t<dict>
\t\t<key>SuccessfulExit</key>
\t\t<false/>
\t</dict>
\t<key>ThrottleInterval</key>
\t<integer>2</integer>
\t<key>ExitTimeOut</key>
\t<integer>30</integer>
\t<key>StandardOutPath</key>
\t<string>${log}</string>
\t<key>StandardErrorPath</key>
\t<string>${log}</string>
</dict>
</plist>
`
}

/** The environment file a first install writes; an existing one is never touched (it may hold keys). */
export function initialEnvFile(paths: ServicePaths, reload: string): string {
  return `# Sage's configuration as a service, one KEY=value a line (every variable: the README's configuration table).
# LOG_LEVEL, RATE_LIMIT_MAX, RATE_LIMIT_WINDOW_MS, HOOK_DEADLINE_MS, HOOK_TOKEN_BUDGET and the keys change on
#   ${reload}
# anything else on a restart. Keys: sage-memory keys new, then SAGE_API_KEYS=... here (this file is chmod 600).
HOST=127.0.0.1
PORT=8765
SAGE_DATA_DIR="${paths.dataDir}"
# DATABASE_URL=postgres://sage@127.0.0.1:5432/sage
# REDIS_URL=redis://127.0.0.1:6379/0
`
}
