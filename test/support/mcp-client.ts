import { Client, StreamableHTTPClientTransport, type CallToolResult, type FetchLike } from '@modelcontextprotocol/client'
import type { TestContext } from 'node:test'

/** The protocol eras a client can speak: 2025 (initialize handshake) and 2026-07-28 (per-request envelope, probed with server/discover). */
export const ERAS = ['legacy', 'modern'] as const
export type Era = (typeof ERAS)[number]

export interface McpClientOptions {
  apiKey?: string
  era?: Era
  /** Fetch for every request of this client (to route it to several servers, say). */
  fetch?: FetchLike
}

/** The SDK's own client, connected over Streamable HTTP to `url`, closed when the test ends. */
export async function mcpClient(t: TestContext, url: string | URL, options: McpClientOptions = {}): Promise<Client> {
  const client = new Client({ name: 'sage-test', version: '1.0.0' }, { versionNegotiation: { mode: options.era === 'modern' ? 'auto' : 'legacy' } })
  const transport = new StreamableHTTPClientTransport(new URL(url), {
    ...(options.apiKey ? { authProvider: { token: async () => options.apiKey } } : {}),
    ...(options.fetch ? { fetch: options.fetch } : {})
  })
  await client.connect(transport)
  t.after(() => client.close())
  return client
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- assertions read whatever the tool answered
type ToolAnswer = CallToolResult & { structuredContent?: Record<string, any> }

/** A tool call's answer, which these tests always expect to be a result (a tool error included), never a protocol error. */
export async function callTool(client: Client, name: string, args: Record<string, unknown>): Promise<ToolAnswer> {
  return (await client.callTool({ name, arguments: args })) as ToolAnswer
}

/** The text of a result's first content block. */
export function textOf(result: CallToolResult): string {
  const first = result.content[0]
  return first?.type === 'text' ? first.text : ''
}
