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
