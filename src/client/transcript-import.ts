import { BatchUploadError, createBatchUpload } from './batch-upload.js'
import type { HookNamespace } from '../hooks/hook-namespace.js'
import {
  addTranscriptStats,
  emptyTranscriptStats,
  findTranscriptFiles,
  readTranscriptFile,
  type TranscriptMemory,
  type TranscriptStats
} from './claude-transcript.js'

/**
 * Sends Claude Code transcripts to a running Sage through `POST /v1/memories/batch`, one namespace per batch
 * (a key scoped to some namespaces then fails only its own). Each memory carries its transcript line uuid as
 * source id, so importing the same files again creates nothing: the service answers those as duplicates.
 */

export interface TranscriptImportOptions {
  /** A `.jsonl` file or a folder such as ~/.claude/projects. */
  path: string
  /** Where Sage listens, e.g. http://127.0.0.1:8765. */
  url: string
  apiKey?: string
  /** One namespace for everything, instead of each transcript's own from its `cwd`. */
  namespace?: string
  namespaceOf: HookNamespace
  /** Items per request, at most 500. */
  batchSize?: number
  /** Serialized bytes per request, kept well under the service's BATCH_BODY_LIMIT_BYTES. */
  maxBatchBytes?: number
  includeToolCalls?: boolean
  onProgress?: (progress: TranscriptImportProgress) => void
  /** Waits between retries of a request the service could not take (429, 5xx, refused connection). */
  retryDelaysMs?: readonly number[]
}

export interface TranscriptImportProgress {
  files: number
  filesDone: number
  sent: number
  created: number
  duplicates: number
}

export interface TranscriptImportSummary extends TranscriptImportProgress {
  /** Items the service refused (400) even alone, with its message. */
  rejected: Array<{ source_id: string; message: string }>
  unreadable: Array<{ file: string; message: string }>
  /** What the transcripts held and what was skipped, by reason. */
  stats: TranscriptStats
}

type Item = Omit<TranscriptMemory, 'metadata'> & { namespace: string; metadata: TranscriptMemory['metadata'] }

const MAX_BATCH = 500

export async function importTranscripts(options: TranscriptImportOptions): Promise<TranscriptImportSummary> {
  const batchSize = Math.min(MAX_BATCH, Math.max(1, options.batchSize ?? MAX_BATCH))
  const maxBatchBytes = options.maxBatchBytes ?? 4 * 1024 * 1024
  const upload = createBatchUpload({ url: options.url, apiKey: options.apiKey, retryDelaysMs: options.retryDelaysMs })
  const files = await findTranscriptFiles(options.path)
  const summary = { files: files.length, filesDone: 0, unreadable: [] as TranscriptImportSummary['unreadable'], stats: emptyTranscriptStats() }
  const progress = () => options.onProgress?.({ files: summary.files, filesDone: summary.filesDone, sent: upload.totals.sent, created: upload.totals.created, duplicates: upload.totals.duplicates })
  const post = async (items: Item[]) => {
    await upload.post(items)
    progress()
  }

  const pending = new Map<string, { items: Item[]; bytes: number }>()
  async function flush(namespace: string): Promise<void> {
    const batch = pending.get(namespace)
    pending.delete(namespace)
    if (batch && batch.items.length > 0) await post(batch.items)
  }

  for (const file of files) {
    const stats = emptyTranscriptStats()
    try {
      for await (const memory of readTranscriptFile(file, { stats, includeToolCalls: options.includeToolCalls })) {
        const namespace = options.namespace ?? (await options.namespaceOf(memory.metadata.cwd))
        const item: Item = { ...memory, namespace }
        const bytes = Buffer.byteLength(JSON.stringify(item))
        const batch = pending.get(namespace) ?? { items: [], bytes: 0 }
        if (batch.items.length > 0 && batch.bytes + bytes > maxBatchBytes) {
          await flush(namespace)
          pending.set(namespace, { items: [item], bytes })
          continue
        }
        batch.items.push(item)
        batch.bytes += bytes
        pending.set(namespace, batch)
        if (batch.items.length >= batchSize) await flush(namespace)
      }
    } catch (error) {
      if (error instanceof BatchUploadError) throw error
      // An unreadable file (permissions, vanished) is reported; what it yielded before still goes out.
      summary.unreadable.push({ file, message: (error as Error).message })
    }
    for (const namespace of [...pending.keys()]) await flush(namespace)
    addTranscriptStats(summary.stats, stats)
    summary.filesDone++
    progress()
  }
  return { ...summary, ...upload.totals }
}
