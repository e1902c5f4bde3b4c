import { createReadStream } from 'node:fs'
import { open, stat } from 'node:fs/promises'
import { createInterface } from 'node:readline'
import type { Readable } from 'node:stream'
import { createBatchUpload, type BatchUploadTotals } from '../client/batch-upload.js'
import { ROLES, type Memory } from '../memory/memory-schemas.js'

/**
 * Reads what `sage-memory export` wrote back into a running Sage, through `POST /v1/memories/batch`. Each memory
 * keeps its time, session, role, metadata and tags; its source id is the one it had, or, when it had none, its
 * exported id, so importing the same file again creates nothing. Into a namespace that already holds memories (a
 * restore into the store the export came from), a memory without a source id is first looked up by its id, and
 * one that is still there is counted as a duplicate rather than saved again.
 */

export interface MemoryImportOptions {
  /** The export file, or a stream of it (standard input). */
  input: string | Readable
  url: string
  apiKey?: string
  /** Import into this namespace instead of each memory's own. */
  namespace?: string
  /** After each batch: bytes read of `totalBytes` (known for a file), and the totals so far. */
  onProgress?: (progress: MemoryImportProgress) => void
  retryDelaysMs?: readonly number[]
}

export interface MemoryImportProgress {
  bytesRead: number
  totalBytes: number | undefined
  sent: number
  created: number
  duplicates: number
}

export interface MemoryImportSummary extends BatchUploadTotals {
  lines: number
  /** Lines that are not an exported memory, by line number (the first 20). */
  malformed: Array<{ line: number; message: string }>
  malformedCount: number
}

const BATCH_ITEMS = 500
const BATCH_BYTES = 4 * 1024 * 1024

const isObject = (value: unknown): value is Record<string, unknown> => typeof value === 'object' && value !== null && !Array.isArray(value)

/**
 * Whether a parsed line is a memory as `sage-memory export` writes it. Claude Code transcript lines always carry a
 * `type` and never a `content` string beside `namespace` and `role`, so the two formats cannot be taken for each other.
 */
export function isExportedMemory(value: unknown): value is Memory {
  return (
    isObject(value) &&
    value.type === undefined &&
    typeof value.id === 'string' &&
    typeof value.namespace === 'string' &&
    typeof value.content === 'string' &&
    typeof value.created_at === 'string' &&
    (ROLES as readonly unknown[]).includes(value.role)
  )
}

/** Whether the file's first non-blank line is an exported memory: what `sage-memory import` decides the format by. */
export async function isMemoryExport(path: string): Promise<boolean> {
  if (!(await stat(path)).isFile()) return false
  const file = await open(path)
  try {
    const { buffer, bytesRead } = await file.read(Buffer.alloc(256 * 1024), 0, 256 * 1024, 0)
    const first = buffer.subarray(0, bytesRead).toString('utf8').split('\n').find((line) => line.trim() !== '')
    if (first === undefined) return false
    try {
      return isExportedMemory(JSON.parse(first))
    } catch {
      return false
    }
  } finally {
    await file.close()
  }
}

type Item = Omit<Memory, 'id'>
interface Pending {
  items: Item[]
  /** The exported ids of the items that had no source id of their own, by index. */
  bareIds: Map<number, string>
  bytes: number
}

const LOOKUPS_IN_FLIGHT = 16

export async function importMemories(options: MemoryImportOptions): Promise<MemoryImportSummary> {
  const upload = createBatchUpload({ url: options.url, apiKey: options.apiKey, retryDelaysMs: options.retryDelaysMs })
  const totalBytes = typeof options.input === 'string' ? (await stat(options.input)).size : undefined
  const stream = typeof options.input === 'string' ? createReadStream(options.input) : options.input
  let bytesRead = 0
  stream.on('data', (chunk: Buffer | string) => (bytesRead += Buffer.byteLength(chunk)))
  const summary: MemoryImportSummary = { ...upload.totals, lines: 0, malformed: [], malformedCount: 0 }
  const progress = () =>
    options.onProgress?.({ bytesRead, totalBytes, sent: upload.totals.sent, created: upload.totals.created, duplicates: upload.totals.duplicates })

  const base = options.url.endsWith('/') ? options.url : `${options.url}/`
  const headers = options.apiKey === undefined ? undefined : { authorization: `Bearer ${options.apiKey}` }
  const holdsMemories = new Map<string, Promise<boolean>>()
  const namespaceHoldsMemories = (namespace: string) => {
    let answer = holdsMemories.get(namespace)
    if (!answer) {
      const url = new URL('v1/memories', base)
      url.searchParams.set('namespace', namespace)
      url.searchParams.set('limit', '1')
      answer = fetch(url, { headers }).then(async (res) => res.status !== 200 || ((await res.json()) as { items: unknown[] }).items.length > 0)
      holdsMemories.set(namespace, answer)
    }
    return answer
  }
  /** Whether the memory with this exported id is still in `namespace` (the export came from this store). */
  const stillThere = async (id: string, namespace: string) => {
    const res = await fetch(new URL(`v1/memories/${encodeURIComponent(id)}`, base), { headers })
    if (res.status !== 200) {
      await res.arrayBuffer()
      return false
    }
    return ((await res.json()) as { namespace?: string }).namespace === namespace
  }

  // One batch per namespace at a time: a key scoped to some of them then fails only its own.
  const pending = new Map<string, Pending>()
  const flush = async (namespace: string) => {
    const batch = pending.get(namespace)
    pending.delete(namespace)
    if (!batch || batch.items.length === 0) return
    let items = batch.items
    if (batch.bareIds.size > 0 && (await namespaceHoldsMemories(namespace))) {
      const present = new Set<number>()
      const lookups = [...batch.bareIds]
      await Promise.all(
        Array.from({ length: Math.min(LOOKUPS_IN_FLIGHT, lookups.length) }, async () => {
          for (let next = lookups.shift(); next; next = lookups.shift()) if (await stillThere(next[1], namespace)) present.add(next[0])
        })
      )
      upload.totals.duplicates += present.size
      items = items.filter((_, index) => !present.has(index))
    }
    if (items.length > 0) await upload.post(items)
    progress()
  }

  for await (const line of createInterface({ input: stream, crlfDelay: Infinity })) {
    summary.lines++
    if (line.trim() === '') continue
    let memory: unknown
    try {
      memory = JSON.parse(line)
    } catch (error) {
      memory = error
    }
    if (!isExportedMemory(memory)) {
      summary.malformedCount++
      if (summary.malformed.length < 20) {
        summary.malformed.push({ line: summary.lines, message: memory instanceof Error ? `not JSON: ${memory.message}` : 'not a memory of sage-memory export' })
      }
      continue
    }
    const namespace = options.namespace ?? memory.namespace
    const item: Item = {
      namespace,
      session_id: memory.session_id ?? null,
      role: memory.role,
      content: memory.content,
      metadata: memory.metadata ?? {},
      tags: memory.tags ?? [],
      source_id: memory.source_id ?? memory.id,
      created_at: memory.created_at
    }
    const bytes = Buffer.byteLength(line)
    const batch = pending.get(namespace)
    if (batch && batch.items.length > 0 && batch.bytes + bytes > BATCH_BYTES) await flush(namespace)
    const current: Pending = pending.get(namespace) ?? { items: [], bareIds: new Map(), bytes: 0 }
    if (memory.source_id === null || memory.source_id === undefined) current.bareIds.set(current.items.length, memory.id)
    current.items.push(item)
    current.bytes += bytes
    pending.set(namespace, current)
    if (current.items.length >= BATCH_ITEMS) await flush(namespace)
  }
  for (const namespace of [...pending.keys()]) await flush(namespace)
  return { ...summary, ...upload.totals }
}
