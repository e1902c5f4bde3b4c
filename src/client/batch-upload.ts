/**
 * Sends memories to a running Sage through `POST /v1/memories/batch`, as the import commands do: retries what the
 * service could not take yet (429, 5xx, a dropped or refused connection once it has answered), and splits a batch
 * the service refused (400, 413) until the bad item stands alone, so the rest still lands. Every item should carry a
 * source id, so that sending it again creates nothing.
 */

export interface BatchItem {
  namespace: string
  source_id?: string | null
}

export interface BatchUploadOptions {
  /** Where Sage listens, e.g. http://127.0.0.1:8765. */
  url: string
  apiKey?: string
  /** Waits between retries of a request the service could not take. */
  retryDelaysMs?: readonly number[]
}

export interface BatchUploadTotals {
  sent: number
  created: number
  duplicates: number
  /** Items the service refused (400) even alone, with its message. */
  rejected: Array<{ source_id: string; message: string }>
}

/** Thrown for what no retry fixes: a refused key, an unreachable or misbehaving service. */
export class BatchUploadError extends Error {
  override name = 'BatchUploadError'
}

const DEFAULT_RETRY_DELAYS_MS = [500, 1_000, 2_000, 5_000, 10_000]

export function createBatchUpload(options: BatchUploadOptions) {
  const retryDelays = options.retryDelaysMs ?? DEFAULT_RETRY_DELAYS_MS
  const endpoint = new URL('v1/memories/batch', options.url.endsWith('/') ? options.url : `${options.url}/`).toString()
  const totals: BatchUploadTotals = { sent: 0, created: 0, duplicates: 0, rejected: [] }

  async function post(items: BatchItem[]): Promise<void> {
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
        if (attempt >= retryDelays.length || !isPassingNetworkError(error, totals.sent > 0)) {
          const cause = (error as { cause?: { code?: string; message?: string } }).cause
          const why = cause?.code ?? cause?.message
          throw new BatchUploadError(`cannot reach Sage at ${options.url}: ${(error as Error).message}${why ? ` (${why})` : ''}`, { cause: error })
        }
        await sleep(retryDelays[attempt]!)
        continue
      }
      const text = await response.text()
      if (response.status === 201) {
        const results = (JSON.parse(text) as { items: Array<{ created: boolean }> }).items
        totals.sent += items.length
        for (const result of results) {
          if (result.created) totals.created++
          else totals.duplicates++
        }
        return
      }
      const message = errorMessage(text, response.status)
      if (response.status === 400 || response.status === 413) {
        // One bad item fails its whole batch: halve until it stands alone, and send the rest.
        if (items.length === 1) {
          totals.rejected.push({ source_id: items[0]!.source_id ?? '', message })
          return
        }
        const half = Math.ceil(items.length / 2)
        await post(items.slice(0, half))
        await post(items.slice(half))
        return
      }
      if (response.status === 401 || response.status === 403) {
        throw new BatchUploadError(
          `Sage refused the request (${response.status}: ${message}) for namespace "${items[0]!.namespace}"; ` +
            'pass a key that covers it with --key-env or SAGE_API_KEY'
        )
      }
      if ((response.status === 429 || response.status >= 500) && attempt < retryDelays.length) {
        const retryAfter = Number(response.headers.get('retry-after'))
        await sleep(Number.isFinite(retryAfter) && retryAfter > 0 ? Math.min(retryAfter * 1000, 60_000) : retryDelays[attempt]!)
        continue
      }
      throw new BatchUploadError(`POST ${endpoint} answered ${response.status}: ${message}`)
    }
  }

  return { totals, post }
}

/** The `message` of Sage's error body, or the start of whatever else came back. */
export function errorMessage(text: string, status: number): string {
  try {
    const body = JSON.parse(text) as { message?: unknown }
    if (typeof body.message === 'string') return body.message
  } catch {
    // not Sage's error shape; fall through
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
