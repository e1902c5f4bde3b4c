import type { Memory } from './memory-schemas.js'

const CJK = /[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]/g

/** A cheap, conservative token estimate: about 4 characters a token for Latin text, one per CJK character. */
export function estimateTokens(text: string): number {
  const cjk = text.match(CJK)?.length ?? 0
  return Math.ceil((text.length - cjk) / 4 + cjk)
}

/** `text` cut to at most `tokens` (by estimateTokens), with an ellipsis where it was cut. */
export function cutToTokens(text: string, tokens: number): string {
  if (estimateTokens(text) <= tokens) return text
  let low = 0
  let high = text.length
  // Binary search on length: the estimate is monotonic in the prefix length.
  while (low < high) {
    const mid = Math.ceil((low + high) / 2)
    if (estimateTokens(text.slice(0, mid)) + 1 <= tokens) low = mid
    else high = mid - 1
  }
  return `${text.slice(0, low).trimEnd()}…`
}

/** All white space folded to single spaces. */
export const oneLine = (text: string) => text.replace(/\s+/g, ' ').trim()

/**
 * One block of plain facts, ready to inject into an agent's context: a heading, then one line per memory
 * with its date and who said it, best first, cut to `tokenBudget` (the last line shortened rather than dropped).
 */
export function formatContext(memories: readonly Memory[], tokenBudget: number, heading = 'Relevant memories from earlier sessions (most relevant first):'): string {
  if (memories.length === 0) return ''
  const lines = [heading]
  let used = estimateTokens(heading)
  for (const memory of memories) {
    const tags = memory.tags.length > 0 ? ` #${memory.tags.join(' #')}` : ''
    const prefix = `- [${memory.created_at.slice(0, 10)} ${memory.role}${tags}] `
    const room = tokenBudget - used - estimateTokens(prefix) - 1
    if (room < 8) break
    const line = prefix + cutToTokens(oneLine(memory.content), room)
    lines.push(line)
    used += estimateTokens(line) + 1
  }
  return lines.length > 1 ? lines.join('\n') : ''
}
