import { importMemories, isMemoryExport, type MemoryImportSummary } from '../backup/memory-import.js'
import { createHookNamespace } from '../hooks/hook-namespace.js'
import { NAMESPACE_PATTERN, NAMESPACE_RULE } from '../memory/memory-schemas.js'
import { importTranscripts, type TranscriptImportProgress, type TranscriptImportSummary } from '../client/transcript-import.js'
import type { Command } from './command.js'
import { parseCommandArgs, UsageError } from './parse-command-args.js'
import { progressBar } from './progress-bar.js'

const USAGE = `PATH [--url http://127.0.0.1:8765] [--key-env SAGE_API_KEY] [--namespace N] [--no-tool-calls]
  PATH: a file of sage-memory export (or - for standard input), or Claude Code transcripts: a .jsonl
  or a folder of them, e.g. ~/.claude/projects; told apart by their first line; safe to run again`

/** `sage-memory import PATH`: an export of Sage's, or Claude Code history, into a running Sage, over HTTP. */
export const importCommand: Command = {
  summary: 'import an export or Claude Code transcripts into a running Sage (again: nothing new is created)',
  usage: USAGE,
  async run(args) {
    const { values, positionals } = parseCommandArgs(args, {
      url: { type: 'string', default: process.env.SAGE_URL ?? 'http://127.0.0.1:8765' },
      'key-env': { type: 'string' },
      namespace: { type: 'string' },
      'no-tool-calls': { type: 'boolean', default: false }
    }, true)
    if (positionals.length !== 1) throw new UsageError(positionals.length === 0 ? 'name the PATH to import' : `unexpected argument "${positionals[1]}"`)
    const keyEnv = values['key-env'] ?? 'SAGE_API_KEY'
    const apiKey = process.env[keyEnv] || undefined
    if (values['key-env'] !== undefined && apiKey === undefined) throw new Error(`${keyEnv} is not set`)
    if (values.namespace !== undefined && !NAMESPACE_PATTERN.test(values.namespace)) {
      throw new Error(`--namespace must be ${NAMESPACE_RULE}, got "${values.namespace}"`)
    }

    const path = positionals[0]!
    if (path === '-' || (await isMemoryExport(path))) {
      const started = Date.now()
      const bar = progressBar('importing', (bytes) => `${(bytes / 1e6).toFixed(1)} MB`)
      const summary = await importMemories({
        input: path === '-' ? process.stdin : path,
        url: values.url,
        apiKey,
        namespace: values.namespace,
        onProgress: (p) => bar.update(p.bytesRead, p.totalBytes, `${p.sent} sent, ${p.created} created, ${p.duplicates} already there`)
      }).finally(() => bar.stop())
      console.log(describeExportImport(summary, Date.now() - started))
      return summary.malformedCount > 0 || summary.rejected.length > 0 ? 1 : 0
    }

    const started = Date.now()
    const bar = progressBar('importing', (files) => `${files} ${files === 1 ? 'file' : 'files'}`)
    const summary = await importTranscripts({
      path,
      url: values.url,
      apiKey,
      namespace: values.namespace,
      // Namespaces as the hook derives them, so imported history and live sessions meet.
      namespaceOf: createHookNamespace(process.env.HOOK_NAMESPACE_MAP),
      includeToolCalls: !values['no-tool-calls'],
      onProgress: (p: TranscriptImportProgress) => bar.update(p.filesDone, p.files, `memories sent ${p.sent} (created ${p.created}, duplicates ${p.duplicates})`)
    }).finally(() => bar.stop())
    console.log(describe(summary, Date.now() - started))
    return summary.unreadable.length > 0 || summary.rejected.length > 0 ? 1 : 0
  }
}

function describe(summary: TranscriptImportSummary, elapsedMs: number): string {
  const lines = [
    `Imported ${summary.files} ${summary.files === 1 ? 'file' : 'files'} in ${(elapsedMs / 1000).toFixed(1)} s: ` +
      `${summary.sent} memories sent, ${summary.created} created, ${summary.duplicates} duplicates (already imported)`
  ]
  const skipped = Object.entries(summary.stats.skipped).filter(([, n]) => n > 0)
  if (summary.stats.malformed > 0) skipped.push(['malformed', summary.stats.malformed])
  lines.push(`Lines read: ${summary.stats.lines}; skipped: ${skipped.length === 0 ? 'none' : skipped.map(([why, n]) => `${why} ${n}`).join(', ')}`)
  if (summary.rejected.length > 0) {
    lines.push(`Refused by Sage: ${summary.rejected.length}`)
    for (const { source_id, message } of summary.rejected.slice(0, 10)) lines.push(`  ${source_id}: ${message}`)
  }
  for (const { file, message } of summary.unreadable) lines.push(`Could not read ${file}: ${message}`)
  return lines.join('\n')
}

function describeExportImport(summary: MemoryImportSummary, elapsedMs: number): string {
  const lines = [
    `Imported an export in ${(elapsedMs / 1000).toFixed(1)} s: ${summary.sent} memories sent, ${summary.created} created, ` +
      `${summary.duplicates} duplicates (already there)`
  ]
  if (summary.malformedCount > 0) {
    lines.push(`Lines that are not an exported memory: ${summary.malformedCount}`)
    for (const { line, message } of summary.malformed.slice(0, 10)) lines.push(`  line ${line}: ${message}`)
  }
  if (summary.rejected.length > 0) {
    lines.push(`Refused by Sage: ${summary.rejected.length}`)
    for (const { source_id, message } of summary.rejected.slice(0, 10)) lines.push(`  ${source_id}: ${message}`)
  }
  return lines.join('\n')
}
