import Database from 'better-sqlite3'
import type { LabelledSet, Retriever } from './labelled-set.js'

/**
 * The keyword baseline: SQLite FTS5 with its own bm25() ranking (what claude-mem searches with), in process, over
 * the same memories. The tokenizer is FTS5's porter unicode61; a query is the OR of its distinct words.
 */
export function fts5Baseline(set: LabelledSet): { retrieve: Retriever; close(): void } {
  const db = new Database(':memory:')
  db.exec("CREATE VIRTUAL TABLE memories USING fts5(content, namespace UNINDEXED, id UNINDEXED, tokenize = 'porter unicode61')")
  const insert = db.prepare('INSERT INTO memories (content, namespace, id) VALUES (?, ?, ?)')
  db.transaction(() => {
    for (const memory of set.memories) insert.run(memory.content, memory.namespace, memory.id)
  })()
  const search = db.prepare('SELECT id FROM memories WHERE memories MATCH ? AND namespace = ? ORDER BY bm25(memories) LIMIT ?')
  return {
    async retrieve(query, k) {
      const words = [...new Set(query.query.toLowerCase().match(/[\p{L}\p{N}]+/gu) ?? [])]
      if (words.length === 0) return []
      const match = words.map((word) => `"${word}"`).join(' OR ')
      return (search.all(match, query.namespace, k) as Array<{ id: string }>).map((row) => row.id)
    },
    close: () => db.close()
  }
}
