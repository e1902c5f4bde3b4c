import autocannon from 'autocannon'

export interface LoadOptions {
  url: string
  path: string
  connections: number
  seconds: number
  /** A fixed number of requests instead of a duration: every one completes, none is cut off mid-flight. */
  amount?: number
  /** How long one request may take before it counts as failed; default 30 s. */
  timeoutSeconds?: number
  /**
   * Each request's JSON body, made fresh per request so no two saves are the same; a string is sent as it is
   * (JSON serialized before the load began, so that making it costs the load generator nothing).
   */
  body: () => unknown
  /** Items each request carries (a batch), for the items-per-second figure. */
  itemsPerRequest?: number
}

export interface LoadResult {
  connections: number
  seconds: number
  requests: number
  requestsPerSecond: number
  itemsPerSecond: number
  /** Latencies of 2xx answers, in milliseconds, to the microsecond. */
  p50: number
  p99: number
  mean: number
  /** Non-2xx answers and socket errors: any is a failed run. */
  failures: number
  statusCodes: Record<string, number>
  /** The first failed answer's body, to say why. */
  firstFailure?: string
}

/** Nearest-rank percentile over sorted values. */
export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return Number.NaN
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))
  return sorted[rank] as number
}

/**
 * Runs autocannon against the listening service. Latencies are taken from its per-response event, which carries
 * them to the microsecond; its own histogram rounds to whole milliseconds, too coarse for a 5 ms target.
 */
export function runLoad(options: LoadOptions): Promise<LoadResult> {
  const latencies: number[] = []
  const statusCodes: Record<string, number> = {}
  let failures = 0
  let firstFailure: string | undefined
  const started = performance.now()
  let lastAnswer = started
  return new Promise((resolve, reject) => {
    const instance = autocannon(
      {
        url: options.url,
        connections: options.connections,
        duration: options.seconds,
        // A fixed amount is seen to be done at autocannon's next sample: every 50 ms, not every second, so the
        // phase's CPU readings are not diluted by an idle tail.
        ...(options.amount ? { amount: options.amount, sampleInt: 50 } : {}),
        timeout: options.timeoutSeconds ?? 30,
        requests: [
          {
            method: 'POST',
            path: options.path,
            headers: { 'content-type': 'application/json' },
            setupRequest: (request) => {
              const body = options.body()
              return { ...request, body: typeof body === 'string' ? body : JSON.stringify(body) }
            },
            onResponse: (status, body) => {
              if ((status < 200 || status >= 300) && firstFailure === undefined) firstFailure = `${status} ${body.slice(0, 300)}`
            }
          }
        ]
      },
      (error, result) => {
        if (error) return reject(error)
        latencies.sort((a, b) => a - b)
        // autocannon's duration runs to that sample (by default the next whole second: a 7.1 s phase read 8.0 s,
        // up to a ninth of an 8 s phase's throughput lost): with an amount the phase ends at its last answer.
        const seconds = options.amount ? (lastAnswer - started) / 1000 : result.duration
        const requests = latencies.length
        // autocannon counts a timeout as an error too.
        failures += result.errors
        if (result.timeouts > 0 && firstFailure === undefined) firstFailure = `${result.timeouts} timed out after ${options.timeoutSeconds ?? 30} s`
        resolve({
          connections: options.connections,
          seconds,
          requests,
          requestsPerSecond: requests / seconds,
          itemsPerSecond: (requests * (options.itemsPerRequest ?? 1)) / seconds,
          p50: percentile(latencies, 50),
          p99: percentile(latencies, 99),
          mean: latencies.reduce((sum, value) => sum + value, 0) / Math.max(1, requests),
          failures,
          statusCodes,
          firstFailure
        })
      }
    )
    instance.on('response', (_client, statusCode, _bytes, responseTime) => {
      lastAnswer = performance.now()
      statusCodes[statusCode] = (statusCodes[statusCode] ?? 0) + 1
      if (statusCode >= 200 && statusCode < 300) latencies.push(responseTime)
      else failures++
    })
  })
}
