import { applyEdits, findNodeAtLocation, format, modify, parse as parseJsonc, parseTree, printParseErrorCode, type FormattingOptions, type ParseError } from 'jsonc-parser'
import { isDeepStrictEqual } from 'node:util'
import { parse as parseToml, stringify as stringifyToml } from 'smol-toml'
import { deleteCreatedSettingsFile, readSettingsFile, writeSettingsFile, type BackupOptions, type SettingsFile } from '../settings-file.js'
import { SAGE_SERVER_NAME, type AgentPlaces, type McpAgent, type McpEntryOptions, type McpScope } from './mcp-agents.js'

/**
 * Adds Sage's MCP server to an agent's settings file and removes it again, to the standard of `hooks install`:
 * merged with what is there, every other byte of the file kept (comments included: JSON files are edited with
 * jsonc-parser, TOML files by replacing Sage's own table and checking the result parses to exactly the intended
 * data), a backup of the file before any change (with `backups`, where hooks install keeps its own), nothing
 * changed when Sage's entry is already as wanted, and uninstall removing exactly what install added, the file too
 * when install created it and nothing else is in it. A "sage" entry that Sage did not write is never touched.
 */

export interface McpInstallResult {
  path: string
  changed: boolean
  backupPath?: string
}

export interface McpUninstallResult extends McpInstallResult {
  /** Install created the file and it held nothing else, so it is deleted. */
  removedFile?: boolean
}

type JsonObject = Record<string, unknown>

export function mcpSettingsPath(agent: McpAgent, scope: McpScope, places: AgentPlaces): string {
  const file = agent.files[scope]
  if (!file) throw new Error(`${agent.name} has no ${scope} MCP settings; use ${Object.keys(agent.files).map((s) => `--${s}`).join(' or ')}`)
  return file(places)
}

/** Whether an MCP server entry is one Sage writes: it reaches a Sage /mcp URL, or starts `sage-memory mcp`. */
export function isSageEntry(entry: unknown): boolean {
  if (typeof entry !== 'object' || entry === null || Array.isArray(entry)) return false
  const server = entry as JsonObject
  for (const key of ['url', 'serverUrl', 'httpUrl']) {
    const url = server[key]
    if (typeof url === 'string') {
      try {
        return new URL(url).pathname.replace(/\/+$/, '').endsWith('/mcp')
      } catch {
        return false
      }
    }
  }
  const args = Array.isArray(server.args) ? server.args : []
  return typeof server.command === 'string' && args.includes('mcp') && [server.command, ...args].some((part) => typeof part === 'string' && /sage-memory|cli\.js$/.test(part))
}

export async function installMcp(agent: McpAgent, scope: McpScope, places: AgentPlaces, options: McpEntryOptions, backups?: BackupOptions): Promise<McpInstallResult> {
  const entry = agent.entry(options)
  const file = await readSettingsFile(mcpSettingsPath(agent, scope, places))
  const path = agent.entryPath(scope, places)
  const text = agent.format === 'toml' ? installToml(file, path, entry) : installJson(file, path, entry, agent, options.apiKeyEnv !== undefined)
  if (text === file.text) return { path: file.path, changed: false }
  return { path: file.path, changed: true, ...(await writeSettingsFile(file, text, backups)) }
}

export async function uninstallMcp(agent: McpAgent, scope: McpScope, places: AgentPlaces, backups?: BackupOptions): Promise<McpUninstallResult> {
  const file = await readSettingsFile(mcpSettingsPath(agent, scope, places))
  if (!file.exists) return { path: file.path, changed: false }
  const path = agent.entryPath(scope, places)
  const { text, empty } = agent.format === 'toml' ? uninstallToml(file, path) : uninstallJson(file, path, agent)
  if (text === file.text) return { path: file.path, changed: false }
  if (empty && (await deleteCreatedSettingsFile(file, backups))) return { path: file.path, changed: true, removedFile: true }
  return { path: file.path, changed: true, ...(await writeSettingsFile(file, text, backups)) }
}

/** What is left once Sage's entry is out, and whether that is nothing at all. */
type Remaining = { text: string; empty: boolean }

const refuse = (file: SettingsFile, why: string) => new Error(`${file.path} ${why}; nothing was changed`)

/** The same data, however each parser builds its objects (smol-toml's have no prototype). */
const sameData = (a: unknown, b: unknown) => isDeepStrictEqual(JSON.parse(JSON.stringify(a ?? null)), JSON.parse(JSON.stringify(b ?? null)))

function foreignEntry(file: SettingsFile, entry: unknown): Error | undefined {
  if (entry === undefined || isSageEntry(entry)) return undefined
  return refuse(file, `already has an MCP server named "${SAGE_SERVER_NAME}" that Sage did not write: rename or remove it by hand`)
}

// JSON settings (Claude Code, Cursor, VS Code, Windsurf, Gemini CLI), JSON with comments included.

function readJson(file: SettingsFile): JsonObject {
  if (file.text.trim() === '') return {}
  const errors: ParseError[] = []
  const root = parseJsonc(file.text, errors, { allowTrailingComma: true, disallowComments: false })
  if (errors.length > 0) throw refuse(file, `is not valid JSON (${printParseErrorCode(errors[0]!.error)} at offset ${errors[0]!.offset}): fix it by hand`)
  if (typeof root !== 'object' || root === null || Array.isArray(root)) throw refuse(file, 'does not hold a JSON object: fix it by hand')
  return root as JsonObject
}

function valueAt(root: unknown, path: readonly string[]): unknown {
  let value = root
  for (const key of path) {
    if (typeof value !== 'object' || value === null || Array.isArray(value)) return undefined
    value = (value as JsonObject)[key]
  }
  return value
}

/** The file's own indentation, so what is added looks like what is there. */
function formattingOf(text: string): FormattingOptions {
  const indent = /\n([ \t]+)"/.exec(text)?.[1]
  return { insertSpaces: !indent?.startsWith('\t'), tabSize: indent && !indent.startsWith('\t') ? indent.length : 2, eol: text.includes('\r\n') ? '\r\n' : '\n' }
}

/**
 * Whether removing Sage's entry leaves its top-level servers object empty: then that goes too (install makes it
 * when it is missing). A deeper one, such as a Claude Code project's own record, is left as it is.
 */
function emptiedContainer(root: JsonObject, path: readonly string[]): boolean {
  const container = valueAt(root, path.slice(0, -1))
  if (path.length !== 2 || typeof container !== 'object' || container === null) return false
  const keys = Object.keys(container)
  return keys.length === 1 && keys[0] === path[1]
}

/** Sets (or with undefined removes) one value, formatting only what changed. */
function setJson(text: string, path: (string | number)[], value: unknown, options: { isArrayInsertion?: boolean } = {}): string {
  const formatting = formattingOf(text)
  let out = text
  for (const edit of modify(text, path, value, options).sort((a, b) => b.offset - a.offset)) {
    out = applyEdits(out, [edit])
    out = applyEdits(out, format(out, { offset: edit.offset, length: edit.content.length }, formatting))
  }
  return out
}

function installJson(file: SettingsFile, path: string[], entry: JsonObject, agent: McpAgent, withKey: boolean): string {
  const root = readJson(file)
  const current = valueAt(root, path)
  const refused = foreignEntry(file, current)
  if (refused) throw refused
  for (let depth = 1; depth < path.length; depth++) {
    const parent = valueAt(root, path.slice(0, depth))
    if (parent !== undefined && (typeof parent !== 'object' || parent === null || Array.isArray(parent))) {
      throw refuse(file, `has "${path.slice(0, depth).join('.')}" that is not a JSON object: fix it by hand`)
    }
  }
  let text = file.text
  if (text.trim() === '') {
    // A new file is written whole, in the usual two-space layout.
    const settings: JsonObject = {}
    let place = settings
    for (const key of path.slice(0, -1)) place = (place[key] = {}) as JsonObject
    place[path[path.length - 1]!] = entry
    if (agent.input && withKey) settings.inputs = [agent.input.entry]
    return `${JSON.stringify(settings, null, 2)}\n`
  }
  if (!sameData(current, entry)) text = setJson(text, path, entry)
  if (agent.input) text = placeInput(text, agent.input, withKey, file)
  return text
}

/** VS Code's key prompt: present, as wanted, when the entry refers to it; gone when it does not. */
function placeInput(text: string, input: NonNullable<McpAgent['input']>, wanted: boolean, file: SettingsFile): string {
  const inputs = valueAt(readJson({ ...file, text }), ['inputs'])
  if (inputs !== undefined && !Array.isArray(inputs)) throw refuse(file, 'has "inputs" that is not an array: fix it by hand')
  const list = (inputs ?? []) as unknown[]
  const index = list.findIndex((item) => (item as JsonObject | null)?.id === input.id)
  if (wanted && index >= 0 && sameData(list[index], input.entry)) return text
  if (wanted && index >= 0) return setJson(text, ['inputs', index], input.entry)
  if (wanted) return setJson(text, ['inputs', list.length], input.entry, { isArrayInsertion: true })
  if (index < 0) return text
  return list.length === 1 ? setJson(text, ['inputs'], undefined) : withoutArrayItem(text, ['inputs'], index)
}

/** Removes one item from an array, from the end of the item before it (as an insertion at the end adds it). */
function withoutArrayItem(text: string, path: string[], index: number): string {
  const items = findNodeAtLocation(parseTree(text)!, path)!.children!
  const item = items[index]!
  const from = index > 0 ? items[index - 1]!.offset + items[index - 1]!.length : item.offset
  const to = index > 0 ? item.offset + item.length : items[index + 1]!.offset
  return text.slice(0, from) + text.slice(to)
}

function uninstallJson(file: SettingsFile, path: string[], agent: McpAgent): Remaining {
  const root = readJson(file)
  const current = valueAt(root, path)
  if (current === undefined) return { text: file.text, empty: false }
  const refused = foreignEntry(file, current)
  if (refused) throw refused
  const containerPath = path.slice(0, -1)
  let text = setJson(file.text, emptiedContainer(root, path) ? containerPath : path, undefined)
  if (agent.input) text = placeInput(text, agent.input, false, file)
  const left = readJson({ ...file, text })
  return { text, empty: Object.keys(left).length === 0 }
}

// TOML settings (Codex CLI).

function readToml(file: SettingsFile): JsonObject {
  try {
    return parseToml(file.text) as JsonObject
  } catch (error) {
    throw refuse(file, `is not valid TOML (${(error as Error).message.split('\n')[0]}): fix it by hand`)
  }
}

/** Whether the edited text is exactly the intended data (the check that a text edit removed and added only Sage's tables). */
function parsesTo(text: string, wanted: JsonObject): boolean {
  try {
    return sameData(parseToml(text), wanted)
  } catch {
    return false
  }
}

/** Splits a TOML key (`mcp_servers."sage".env`) into its parts. */
function tomlKeyParts(key: string): string[] {
  const parts = key.match(/"(?:[^"\\]|\\.)*"|'[^']*'|[^.]+/g) ?? []
  return parts.map((part) => part.trim().replace(/^"(.*)"$/, '$1').replace(/^'(.*)'$/, '$1'))
}

const TABLE_HEADER = /^\s*\[\[?([^[\]]+)\]\]?\s*(?:#.*)?$/

/**
 * The text without the tables of `path` (a table and its sub-tables, wherever they are, each with the lines up
 * to the next table). Whether that removed exactly them is for the caller to check, by parsing.
 */
function withoutTomlTables(text: string, path: readonly string[]): string {
  const kept: string[] = []
  let inside = false
  for (const line of text.split(/(?<=\n)/)) {
    const header = TABLE_HEADER.exec(line.replace(/\r?\n$/, ''))
    if (header) {
      const parts = tomlKeyParts(header[1]!)
      inside = path.every((key, i) => parts[i] === key)
    }
    if (!inside) kept.push(line)
  }
  return kept.join('')
}

function withoutEntry(data: JsonObject, path: readonly string[]): JsonObject {
  const copy = structuredClone(data)
  if (emptiedContainer(copy, path)) delete copy[path[0]!]
  else delete (valueAt(copy, path.slice(0, -1)) as JsonObject | undefined)?.[path[path.length - 1]!]
  return copy
}

function installToml(file: SettingsFile, path: string[], entry: JsonObject): string {
  const data = readToml(file)
  const current = valueAt(data, path)
  if (sameData(current, entry)) return file.text
  const refused = foreignEntry(file, current)
  if (refused) throw refused
  let nested: JsonObject = entry
  for (const key of [...path].reverse()) nested = { [key]: nested }
  const block = stringifyToml(nested).trimEnd()
  const rest = withoutTomlTables(file.text, path).trimEnd()
  const text = `${rest === '' ? '' : `${rest}\n\n`}${block}\n`
  const wanted = withoutEntry(data, path)
  let place = wanted
  for (const key of path.slice(0, -1)) place = (place[key] ??= {}) as JsonObject
  place[path[path.length - 1]!] = entry
  if (!parsesTo(text, wanted)) {
    throw refuse(file, `keeps its "${path.join('.')}" server in a form Sage cannot edit safely (dotted keys or an inline table); put this in it by hand:\n\n${block}\n`)
  }
  return text
}

function uninstallToml(file: SettingsFile, path: string[]): Remaining {
  const data = readToml(file)
  const current = valueAt(data, path)
  if (current === undefined) return { text: file.text, empty: false }
  const refused = foreignEntry(file, current)
  if (refused) throw refused
  const rest = withoutTomlTables(file.text, path).trimEnd()
  const text = rest === '' ? '' : `${rest}\n`
  if (!parsesTo(text, withoutEntry(data, path))) {
    throw refuse(file, `keeps its "${path.join('.')}" server in a form Sage cannot edit safely (dotted keys or an inline table): remove it by hand`)
  }
  return { text, empty: text === '' }
}
