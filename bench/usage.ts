import { execFileSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { cpus } from 'node:os'

/** Where a phase's time went: CPU by process (in cores, so 2 is all of this machine) and the service's own timings. */
export interface Usage {
  seconds: number
  /** The service process (with PGlite, the store runs inside it too). */
  serviceCores: number
  /** This process: autocannon and the workload generator, which share the machine with the service. */
  benchCores: number
  /** The Postgres backends serving this benchmark's database (0 with PGlite). */
  databaseCores: number
  /** Everything else busy on the machine: other programs, and Postgres's shared background processes. */
  otherCores: number
  /** Mean time the service spent on one request, by route, from its http_request_duration_seconds histogram. */
  serverMs: Record<string, number>
  /** Mean time of one embedder call (a save's texts, a batch's texts, or a query). */
  embedMs: number
  /** Mean recall time inside the service by mode, query embedding included. */
  recallMs: Record<string, number>
  /** Recalls answered from the service's recall cache: the harness never repeats a query, so this should stay 0. */
  recallCacheHits: number
}

export type Series = Array<{ name: string; labels: Record<string, string>; value: number }>

/** The samples of a Prometheus text exposition (the service's /metrics). */
export function parseExposition(text: string): Series {
  const series: Series = []
  for (const line of text.split('\n')) {
    const match = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)/.exec(line)
    if (!match) continue
    const labels: Record<string, string> = {}
    for (const pair of (match[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[pair[1] as string] = pair[2] as string
    series.push({ name: match[1] as string, labels, value: Number(match[3]) })
  }
  return series
}

/** CPU seconds this machine has used so far, all cores together. */
export function machineBusySeconds(): number {
  let busy = 0
  for (const cpu of cpus()) busy += cpu.times.user + cpu.times.nice + cpu.times.sys + cpu.times.irq
  return busy / 1000
}

const CLOCK_TICKS = (() => {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100
  } catch {
    return 100
  }
})()

/** CPU seconds of each live process, from /proc (Linux); a process gone since is simply absent. */
function processSeconds(pids: readonly number[]): Map<number, number> {
  const seconds = new Map<number, number>()
  for (const pid of pids) {
    try {
      // Fields after the parenthesised command name: state is 3rd, utime 14th, stime 15th.
      const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/^.*\) /s, '').split(' ')
      seconds.set(pid, (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS)
    } catch {
      // exited, or not Linux
    }
  }
  return seconds
}

interface Snapshot {
  at: number
  series: Series
  bench: NodeJS.CpuUsage
  machine: number
  database: Map<number, number>
}

async function snapshot(url: string, databasePids: () => Promise<number[]>): Promise<Snapshot> {
  const response = await fetch(`${url}/metrics`)
  const text = await response.text()
  const database = processSeconds(await databasePids())
  return { at: performance.now(), series: parseExposition(text), bench: process.cpuUsage(), machine: machineBusySeconds(), database }
}

const total = (s: Series, name: string, keep: (labels: Record<string, string>) => boolean = () => true) =>
  s.filter((x) => x.name === name && keep(x.labels)).reduce((sum, x) => sum + x.value, 0)

const recallCache = (labels: Record<string, string>) => labels.cache === 'recall'

/** Groups a histogram's _sum/_count deltas by one label and answers the mean in milliseconds. */
function meansBy(before: Series, after: Series, histogram: string, label: string): Record<string, number> {
  const keys = new Set(after.filter((x) => x.name === `${histogram}_count`).map((x) => x.labels[label] ?? ''))
  const means: Record<string, number> = {}
  for (const key of keys) {
    const match = (labels: Record<string, string>) => (labels[label] ?? '') === key
    const count = total(after, `${histogram}_count`, match) - total(before, `${histogram}_count`, match)
    const sum = total(after, `${histogram}_sum`, match) - total(before, `${histogram}_sum`, match)
    if (count > 0) means[key] = (sum / count) * 1000
  }
  return means
}

/**
 * Starts watching the service; the returned function ends the phase and answers what it cost. `databasePids`
 * names the Postgres backends serving the benchmark (a backend that starts mid-phase counts from zero).
 */
export async function watchUsage(url: string, databasePids: () => Promise<number[]> = async () => []): Promise<() => Promise<Usage>> {
  const before = await snapshot(url, databasePids)
  return async () => {
    const after = await snapshot(url, databasePids)
    const seconds = (after.at - before.at) / 1000
    const serviceSeconds = total(after.series, 'process_cpu_seconds_total') - total(before.series, 'process_cpu_seconds_total')
    const benchSeconds = (after.bench.user + after.bench.system - before.bench.user - before.bench.system) / 1e6
    const machineSeconds = after.machine - before.machine
    let databaseSeconds = 0
    for (const [pid, used] of after.database) databaseSeconds += used - (before.database.get(pid) ?? 0)
    const embedCount = total(after.series, 'sage_embedding_duration_seconds_count') - total(before.series, 'sage_embedding_duration_seconds_count')
    const embedSum = total(after.series, 'sage_embedding_duration_seconds_sum') - total(before.series, 'sage_embedding_duration_seconds_sum')
    return {
      seconds,
      serviceCores: serviceSeconds / seconds,
      benchCores: benchSeconds / seconds,
      databaseCores: databaseSeconds / seconds,
      otherCores: Math.max(0, machineSeconds - serviceSeconds - benchSeconds - databaseSeconds) / seconds,
      serverMs: meansBy(before.series, after.series, 'http_request_duration_seconds', 'route'),
      embedMs: embedCount > 0 ? (embedSum / embedCount) * 1000 : Number.NaN,
      recallMs: meansBy(before.series, after.series, 'sage_recall_duration_seconds', 'mode'),
      recallCacheHits: total(after.series, 'sage_cache_hits_total', recallCache) - total(before.series, 'sage_cache_hits_total', recallCache)
    }
  }
}
