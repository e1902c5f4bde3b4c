import { Client, ProtocolError, SdkHttpError, StreamableHTTPClientTransport, type CallToolResult, type Tool } from '@modelcontextprotocol/client'
import { PACKAGE_VERSION } from '../package-root.js'

/** Why a running Sage could not be reached, in words that say what to do about it. */
export class SageUnreachableError extends Error {
  override name = 'SageUnreachableError'
  /** The HTTP status Sage refused the request with, when it answered at all. */
  get status(): number | undefined {
    return this.cause instanceof SdkHttpError ? this.cause.status : undefined
  }
}

export interface SageConnection {
  readonly url: URL
  listTools(): Promise<Tool[]>
  callTool(name: string, args: Record<string, unknown>): Promise<CallToolResult>
  close(): Promise<void>
}

export interface SageConnectionOptions {
  /** The MCP endpoint, e.g. http://127.0.0.1:8765/mcp (with its ?namespace=, if any). */
  url: URL
  apiKey?: string
  /** How long one request may take. */
  timeoutMs?: number
}

const START_HINT = 'start it with `sage-memory serve` (or `npm start` in its folder), or point SAGE_URL at the Sage that runs'

function describe(error: unknown, url: URL): string {
  if (error instanceof SdkHttpError) {
    switch (error.status) {
      case 401: return `Sage at ${url} needs a valid API key (401): set SAGE_API_KEY to a key from its SAGE_API_KEYS`
      case 403: return `Sage at ${url} refused the request (403): ${error.message}`
      case 404: return `${url} answers, but it is not Sage's MCP endpoint (404): is SAGE_URL the address of Sage?`
      case 429: return `Sage at ${url} is rate limiting this key (429): retry shortly`
      default: return `Sage at ${url} answered ${error.status}: ${error.message}`
    }
  }
  const cause = (error as { cause?: { code?: string } } | undefined)?.cause?.code
  if (cause) return `nothing answers at ${url} (${cause}): ${START_HINT}`
  return `Sage at ${url} could not be reached (${(error as Error).message}): ${START_HINT}`
}

/**
 * An MCP client of a running Sage, connected on first use and again after a failure, so a Sage started (or
 * restarted) later is found. Transport failures become SageUnreachableError; a JSON-RPC error Sage answers
 * (an unknown tool, say) is passed on as it is.
 */
export function createSageConnection(options: SageConnectionOptions): SageConnection {
  const { url, apiKey, timeoutMs = 30_000 } = options
  let connected: Promise<Client> | undefined

  const connect = () =>
    (connected ??= (async () => {
      const client = new Client({ name: 'sage-memory', version: PACKAGE_VERSION })
      // A plain header: Sage's keys are static, and an auth provider would turn a 401 into the SDK's OAuth error.
      const transport = new StreamableHTTPClientTransport(url, apiKey ? { requestInit: { headers: { authorization: `Bearer ${apiKey}` } } } : {})
      await client.connect(transport, { timeout: timeoutMs })
      return client
    })())

  async function use<T>(work: (client: Client) => Promise<T>): Promise<T> {
    try {
      return await work(await connect())
    } catch (error) {
      // Sage answered, with a JSON-RPC error: the caller's to pass on.
      if (error instanceof ProtocolError) throw error
      const failed = connected
      connected = undefined
      await failed?.then((client) => client.close()).catch(() => undefined)
      throw new SageUnreachableError(describe(error, url), { cause: error })
    }
  }

  return {
    url,
    listTools: () => use(async (client) => (await client.listTools(undefined, { timeout: timeoutMs })).tools),
    callTool: (name, args) => use((client) => client.callTool({ name, arguments: args }, { timeout: timeoutMs }) as Promise<CallToolResult>),
    async close() {
      const client = connected
      connected = undefined
      await client?.then((c) => c.close()).catch(() => undefined)
    }
  }
}
