/**
 * A model hub on 127.0.0.1 for tests, standing in for huggingface.co: `GET /<model id>/resolve/main/<file>` answers
 * the file from the model's folder (with `Range: bytes=a-b` answered 206, as transformers.js asks for sizes), and
 * anything else 404. Every request is recorded, so a test can tell a download from a load out of the cache.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import { readFile } from 'node:fs/promises'
import type { AddressInfo } from 'node:net'
import { join, normalize } from 'node:path'

export interface HubRequest {
  method: string
  path: string
  /** Status answered. */
  status: number
  /** Whether a whole file was sent (not a 404, not a one-byte range). */
  download: boolean
}

export interface ModelHub {
  url: string
  requests: HubRequest[]
  /** Whole files sent so far. */
  downloads(): string[]
  close(): Promise<void>
}

const RESOLVE = /^\/(.+?)\/resolve\/main\/(.+)$/

/** Serves `models` (model id → folder) until closed. */
export async function startModelHub(models: Record<string, string>): Promise<ModelHub> {
  const requests: HubRequest[] = []
  const answer = async (request: IncomingMessage, response: ServerResponse) => {
    const path = decodeURIComponent(new URL(request.url ?? '/', 'http://hub').pathname)
    const record = (status: number, download: boolean) => requests.push({ method: request.method ?? 'GET', path, status, download })
    const match = RESOLVE.exec(path)
    const folder = match ? models[match[1]!] : undefined
    const file = match ? normalize(match[2]!) : ''
    let body: Buffer | undefined
    if (folder && !file.startsWith('..')) body = await readFile(join(folder, file)).catch(() => undefined)
    if (!body) {
      record(404, false)
      response.writeHead(404, { 'content-type': 'application/json' }).end(JSON.stringify({ error: 'Entry not found' }))
      return
    }
    const range = /^bytes=(\d+)-(\d*)$/.exec(request.headers.range ?? '')
    if (range) {
      const start = Number(range[1])
      const end = range[2] ? Math.min(Number(range[2]), body.length - 1) : body.length - 1
      record(206, start === 0 && end === body.length - 1)
      response.writeHead(206, { 'content-range': `bytes ${start}-${end}/${body.length}`, 'content-length': end - start + 1, 'accept-ranges': 'bytes' })
      response.end(request.method === 'HEAD' ? undefined : body.subarray(start, end + 1))
      return
    }
    record(200, request.method !== 'HEAD')
    response.writeHead(200, { 'content-length': body.length, 'accept-ranges': 'bytes', 'content-type': 'application/octet-stream' })
    response.end(request.method === 'HEAD' ? undefined : body)
  }
  const server = createServer((request, response) => {
    answer(request, response).catch(() => response.destroy())
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    downloads: () => requests.filter((r) => r.download).map((r) => r.path),
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections()
        server.close(() => resolve())
      })
  }
}
