import assert from 'node:assert/strict'
import { get } from 'node:http'
import { Worker } from 'node:worker_threads'

export interface Probe {
  /** Stops sending and answers the latency of each probe, in milliseconds (those still waiting count as waited so far). */
  stop(): Promise<number[]>
}

/**
 * Sends GET `url` every `everyMs` on a fixed schedule from a thread of its own, whatever the answers: a stall of the
 * server's event loop delays every probe sent meanwhile, so the latencies weigh a stall by how long it lasted
 * (one probe after another would see it once).
 */
export function startProbe(url: string, everyMs: number): Probe {
  const source = `
    const { parentPort, workerData } = require('node:worker_threads')
    const latencies = []
    const waiting = new Set()
    const send = () => {
      const sent = performance.now()
      const probe = { sent }
      waiting.add(probe)
      fetch(workerData.url).then((response) => response.arrayBuffer()).catch(() => undefined).finally(() => {
        waiting.delete(probe)
        latencies.push(performance.now() - sent)
      })
    }
    const timer = setInterval(send, workerData.everyMs)
    parentPort.once('message', () => {
      clearInterval(timer)
      const now = performance.now()
      for (const probe of waiting) latencies.push(now - probe.sent)
      parentPort.postMessage(latencies)
    })
  `
  const worker = new Worker(source, { eval: true, workerData: { url, everyMs } })
  return {
    async stop() {
      const latencies = new Promise<number[]>((resolve) => worker.once('message', resolve))
      worker.postMessage('stop')
      const result = await latencies
      await worker.terminate()
      return result
    }
  }
}

/** GET `url` as text over node:http: fetch stops connecting after 10 s, and a stalled server takes longer. */
export function getText(url: string): Promise<string> {
  return new Promise((resolve, reject) => {
    get(url, (res) => {
      let text = ''
      res.setEncoding('utf8').on('data', (chunk: string) => (text += chunk)).on('end', () => resolve(text))
    }).on('error', reject)
  })
}

/** The service's own event-loop delay since the previous scrape (prom-client's histogram restarts at every scrape), in ms. */
export async function serviceEventLoopDelay(url: string): Promise<{ p99: number; max: number }> {
  const text = await getText(`${url}/metrics`)
  const read = (name: string) => {
    const value = new RegExp(`^${name} (\\S+)$`, 'm').exec(text)?.[1]
    assert.ok(value !== undefined, `/metrics has no ${name}`)
    return Number(value) * 1000
  }
  return { p99: read('nodejs_eventloop_lag_p99_seconds'), max: read('nodejs_eventloop_lag_max_seconds') }
}

export const percentile = (values: readonly number[], p: number) => [...values].sort((a, b) => a - b)[Math.max(0, Math.ceil((p / 100) * values.length) - 1)]!
