// The worker thread of LocalEmbedder: loads the model once, then embeds one batch per message, in order.
import { parentPort, workerData } from 'node:worker_threads'
import { loadLocalModel, type LocalModelOptions } from './local-model.js'

/** One batch to embed. */
export interface EmbedRequest {
  id: number
  texts: string[]
}

export type WorkerReply =
  | { type: 'ready'; dimension: number }
  | { type: 'unloadable'; message: string }
  | { type: 'embedded'; id: number; vectors: Float32Array }
  | { type: 'failed'; id: number; message: string }

const port = parentPort!
const reply = (message: WorkerReply, transfer: ArrayBuffer[] = []) => port.postMessage(message, transfer)
const messageOf = (error: unknown) => (error instanceof Error ? error.message : String(error))

try {
  const model = await loadLocalModel(workerData as LocalModelOptions)
  port.on('message', (request: EmbedRequest) => {
    model.embed(request.texts).then(
      (vectors) => reply({ type: 'embedded', id: request.id, vectors }, [vectors.buffer as ArrayBuffer]),
      (error: unknown) => reply({ type: 'failed', id: request.id, message: messageOf(error) })
    )
  })
  reply({ type: 'ready', dimension: model.dimension })
} catch (error) {
  reply({ type: 'unloadable', message: messageOf(error) })
}
