// LoCoMo (snap-research/locomo, data/locomo10.zip, CC BY-NC 4.0): read from LOCOMO_DIR, never kept in this repository.
import { readdir, readFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { LabelledSet, LabelledMemory, LabelledQuery } from './labelled-set.js'

/** LoCoMo's question categories; 5 (adversarial: questions with no answer in the conversation) is left out. */
export const LOCOMO_CATEGORIES: Record<number, string> = { 1: 'multi-hop', 2: 'temporal', 3: 'open-domain', 4: 'single-hop' }

interface Turn {
  speaker: string
  dia_id: string
  text: string
  blip_caption?: string
}

interface Conversation {
  speaker_a: string
  speaker_b: string
  qa: Array<{ question: string; evidence: string[]; category: number }>
  [session: string]: unknown
}

/** Finds the conversations' JSON files under `dir` (the unzipped archive, at any depth). */
async function conversationFiles(dir: string): Promise<string[]> {
  const found: string[] = []
  for (const entry of await readdir(dir, { withFileTypes: true, recursive: true })) {
    if (entry.isFile() && entry.name.endsWith('.json')) found.push(join(entry.parentPath, entry.name))
  }
  if (found.length === 0) throw new Error(`no LoCoMo conversations (*.json) under ${dir}: unzip data/locomo10.zip there`)
  return found.sort()
}

/** "1:47 pm on 18 May, 2023" as a Date (UTC). */
export function sessionDate(text: string): Date {
  const match = /^(\d{1,2}):(\d{2})\s*(am|pm) on (\d{1,2}) (\w+),? (\d{4})$/i.exec(text.trim())
  if (!match) throw new Error(`unreadable LoCoMo session date "${text}"`)
  const [, hour, minute, half, day, month, year] = match
  const monthIndex = new Date(`${month} 1, 2000 UTC`).getUTCMonth()
  const h = (Number(hour) % 12) + (half!.toLowerCase() === 'pm' ? 12 : 0)
  return new Date(Date.UTC(Number(year), monthIndex, Number(day), h, Number(minute)))
}

/**
 * Evidence ids as the annotators wrote them: mostly "D3:12", but also "D8:6; D9:17", "D9:1 D4:4", "D30:05" and
 * "D:11:26"; those are read as the turns they name, and a bare "D" is dropped.
 */
export function evidenceIds(evidence: readonly string[]): string[] {
  const ids: string[] = []
  for (const item of evidence) {
    for (const match of item.matchAll(/D:?(\d+):(\d+)/g)) ids.push(`D${Number(match[1])}:${Number(match[2])}`)
  }
  return [...new Set(ids)]
}

/**
 * One memory a turn, `speaker: text` plus the image's caption where the turn shares one (as LoCoMo's own retrieval
 * code reads a turn), one namespace a conversation, each turn dated by its session (a second apart within it);
 * questions of categories 1-4 with at least one evidence turn.
 */
export async function loadLocomo(dir: string): Promise<LabelledSet> {
  const memories: LabelledMemory[] = []
  const queries: LabelledQuery[] = []
  for (const file of await conversationFiles(dir)) {
    const conversation = JSON.parse(await readFile(file, 'utf8')) as Conversation
    const namespace = `locomo-${file.replace(/^.*\//, '').replace(/\.json$/, '')}`
    const known = new Set<string>()
    for (let session = 1; Array.isArray(conversation[`session_${session}`]); session++) {
      const turns = conversation[`session_${session}`] as Turn[]
      const date = sessionDate(String(conversation[`session_${session}_date_time`]))
      turns.forEach((turn, i) => {
        const caption = turn.blip_caption ? ` [shares ${turn.blip_caption}]` : ''
        memories.push({
          id: `${namespace}/${turn.dia_id}`,
          namespace,
          session_id: `session_${session}`,
          role: 'user',
          content: `${turn.speaker}: ${turn.text}${caption}`,
          created_at: new Date(date.getTime() + i * 1000).toISOString()
        })
        known.add(turn.dia_id)
      })
    }
    for (const qa of conversation.qa) {
      const category = LOCOMO_CATEGORIES[qa.category]
      if (!category) continue
      const relevant = evidenceIds(qa.evidence).filter((id) => known.has(id)).map((id) => `${namespace}/${id}`)
      if (relevant.length > 0) queries.push({ query: qa.question, namespace, relevant, kind: category })
    }
  }
  return { name: 'LoCoMo', memories, queries, kinds: Object.values(LOCOMO_CATEGORIES) }
}
