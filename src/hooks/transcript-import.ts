import type { HookNamespace } from './hook-namespace.js'
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

/** Thrown for what no retry fixes: a refused key, an unreachable or misbehaving service. */
export class TranscriptImportError extends Error {
  override name = 'TranscriptImportError'
}

type Item = Omit<TranscriptMemory, 'metadata'> & { namespace: string; metadata: TranscriptMemory['metadata'] }

const MAX_BATCH = 500
const DEFAULT_RETRY_DELAYS_MS = [500, 1_000, 2_000, 5_000, 10_000]

export async function importTranscripts(options: TranscriptImportOptions): Promise<TranscriptImportSummary> {
  const batchSize = Math.min(MAX_BATCH, Math.max(1, options.batchSize ?? MAX_BATCH))
  const maxBatchBytes = options.maxBatchBytes ?? 4 * 1024 * 1024
  const retryDelays = options.retryDelaysMs ?? DEFAULT_RETRY_DELAYS_MS
  const endpoint = new URL('v1/memories/batch', options.url.endsWith('/') ? options.url : `${options.url}/`).toString()
  const files = await findTranscriptFiles(options.path)
  const summary: TranscriptImportSummary = {
    files: files.length,
    filesDone: 0,
    sent: 0,
    created: 0,
    duplicates: 0,
    rejected: [],
    unreadable: [],
    stats: emptyTranscriptStats()
  }
  const progress = () => options.onProgress?.({ files: summary.files, filesDone: summary.filesDone, sent: summary.sent, created: summary.created, duplicates: summary.duplicates })

  async function post(items: Item[]): Promise<void> {
    const body = JSON.stringify({ items })
    for (let attempt = 0; ; attempt++) {
      let response: Response
      try {
        response = await fetch(endpoint, {
          method: 'POST',
          headers: {
            'content-type': 'application/json',
            ...(options.apiKey === undefined ? {} : { authorization: `Bearer ${options.apiKey}` })
          },
          body,
          signal: AbortSignal.timeout(120_000)
        })
      } catch (error) {
        if (attempt >= retryDelays.length || !isPassingNetworkError(error, summary.sent > 0)) {
          const cause = (error as { cause?: { code?: string; message?: string } }).cause
          const why = cause?.code ?? cause?.message
          throw new TranscriptImportError(`cannot reach Sage at ${options.url}: ${(error as Error).message}${why ? ` (${why})` : ''}`, { cause: error })
        }
        await sleep(retryDelays[attempt]!)
        continue
      }
      const text = await response.text()
      if (response.status === 201) {
        const results = (JSON.parse(text) as { items: Array<{ created: boolean }> }).items
        summary.sent += items.length
        for (const result of results) {
          if (result.created) summary.created++
          else summary.duplicates++
        }
        progress()
        return
      }
      const message = errorMessage(text, response.status)
      if (response.status === 400 || response.status === 413) {
        // One bad item fails its whole batch: halve until it stands alone, and send the rest.
        if (items.length === 1) {
          summary.rejected.push({ source_id: items[0]!.source_id, message })
          return
        }
        const half = Math.ceil(items.length / 2)
        await post(items.slice(0, half))
        await post(items.slice(half))
        return
      }
      if (response.status === 401 || response.status === 403) {
        throw new TranscriptImportError(
          `Sage refused the request (${response.status}: ${message}) for namespace "${items[0]!.namespace}"; ` +
            'pass a key that covers it with --key-env or SAGE_API_KEY'
        )
      }
      if ((response.status === 429 || response.status >= 500) && attempt < retryDelays.length) {
        const retryAfter = Number(response.headers.get('retry-after'))
        await sleep(Number.isFinite(retryAfter) && retryAfter > 0 ? Math.min(retryAfter * 1000, 60_000) : retryDelays[attempt]!)
        continue
      }
      throw new TranscriptImportError(`POST ${endpoint} answered ${response.status}: ${message}`)
    }
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
      if (error instanceof TranscriptImportError) throw error
      // An unreadable file (permissions, vanished) is reported; what it yielded before still goes out.
      summary.unreadable.push({ file, message: (error as Error).message })
    }
    for (const namespace of [...pending.keys()]) await flush(namespace)
    addTranscriptStats(summary.stats, stats)
    summary.filesDone++
    progress()
  }
  return summary
}

function errorMessage(text: string, status: number): string {
  try {
    const body = JSON.parse(text) as { message?: unknown }
    if (typeof body.message === 'string') return body.message
  } catch {
    // not the contract's error shape; fall through
  }
  return text.slice(0, 200) || `status ${status}`
}

const PASSING_CODES = new Set(['ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'UND_ERR_SOCKET', 'UND_ERR_CONNECT_TIMEOUT', 'UND_ERR_HEADERS_TIMEOUT'])

/** Worth waiting out: a dropped connection, a timeout, or a refused one once Sage has answered before (it restarts). */
function isPassingNetworkError(error: unknown, answeredBefore: boolean): boolean {
  if ((error as Error).name === 'TimeoutError') return true
  const code = (error as { cause?: { code?: string } }).cause?.code
  if (code === 'ECONNREFUSED') return answeredBefore
  return code !== undefined && PASSING_CODES.has(code)
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))
