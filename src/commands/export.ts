import { createWriteStream } from 'node:fs'
import { once } from 'node:events'
import { exportMemories } from '../backup/memory-export.js'
import { NAMESPACE_PATTERN, NAMESPACE_RULE } from '../memory/memory-schemas.js'
import type { Command } from './command.js'
import { parseCommandArgs, UsageError } from './parse-command-args.js'
import { progressBar } from './progress-bar.js'

const USAGE = `--namespace N [--session S] [--output FILE] [--url http://127.0.0.1:8765] [--key-env SAGE_API_KEY]
  JSON Lines on standard output (or FILE): every field of each memory, times kept; sage-memory import reads it back`

/** `sage-memory export`: a namespace, or one session of it, out of a running Sage over HTTP. */
export const exportCommand: Command = {
  summary: "write a namespace's memories as JSON Lines (for backups and moves; import reads them back)",
  usage: USAGE,
  async run(args) {
    const { values } = parseCommandArgs(args, {
      namespace: { type: 'string' },
      session: { type: 'string' },
      output: { type: 'string', short: 'o' },
      url: { type: 'string', default: process.env.SAGE_URL ?? 'http://127.0.0.1:8765' },
      'key-env': { type: 'string' }
    })
    if (values.namespace === undefined) throw new UsageError('--namespace is required')
    if (!NAMESPACE_PATTERN.test(values.namespace)) throw new Error(`--namespace must be ${NAMESPACE_RULE}, got "${values.namespace}"`)
    const keyEnv = values['key-env'] ?? 'SAGE_API_KEY'
    const apiKey = process.env[keyEnv] || undefined
    if (values['key-env'] !== undefined && apiKey === undefined) throw new Error(`${keyEnv} is not set`)

    const out = values.output === undefined ? process.stdout : createWriteStream(values.output, { mode: 0o600 })
    const write = async (line: string) => {
      if (!out.write(line)) await once(out, 'drain')
    }
    const bar = progressBar('exporting', (n) => `${n.toLocaleString('en-US')} memories`)
    const started = Date.now()
    const { exported } = await exportMemories({
      url: values.url,
      apiKey,
      namespace: values.namespace,
      sessionId: values.session,
      write,
      onProgress: (done, total) => bar.update(done, total, values.session === undefined ? `namespace ${values.namespace}` : `session ${values.session}`)
    }).finally(() => bar.stop())
    if (out !== process.stdout) {
      out.end()
      await once(out, 'finish')
    }
    process.stderr.write(`Exported ${exported} ${exported === 1 ? 'memory' : 'memories'} of ${values.namespace}${values.session === undefined ? '' : ` session ${values.session}`} in ${((Date.now() - started) / 1000).toFixed(1)} s${values.output === undefined ? '' : ` to ${values.output}`}\n`)
    return 0
  }
}
