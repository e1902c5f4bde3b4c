import assert from 'node:assert/strict'
import { test } from 'node:test'
import type { Database, QueryResult } from '../../src/db/database.js'
import { createRecall } from '../../src/memory/recall.js'
import { createRecallQuery } from '../../src/memory/recall-query.js'

// Recall sends its vector and text statements at once, and decides how to search vectors before; these tests watch
// how, over a store that answers (or fails) on cue.

const params = { namespace: 'ns', mode: 'hybrid' as const, k: 10, candidates: 40, vector: [1, 0, 0, 0], terms: ['ledger', 'export'], weights: [1, 1], averageLength: 10, selective: [0, 1], exact: false }

test('a recall whose vector side fails while the text side is slow rejects, with no unhandled rejection', async () => {
  const unhandled: unknown[] = []
  const onUnhandled = (reason: unknown) => unhandled.push(reason)
  process.on('unhandledRejection', onUnhandled)
  try {
    const sent: string[] = []
    const db = {
      async query<R>(sql: string): Promise<QueryResult<R>> {
        const side = sql.includes('memory_vectors') ? 'vector' : 'text'
        sent.push(side)
        if (side === 'text') await new Promise((resolve) => setTimeout(resolve, 50))
        throw new Error('connection terminated')
      },
      async exec() {}
    }
    await assert.rejects(createRecallQuery(db, 4).candidates(params), /connection terminated/)
    await new Promise((resolve) => setTimeout(resolve, 100))
    assert.deepEqual(sent.sort(), ['text', 'vector'])
    assert.deepEqual(unhandled, [])
  } finally {
    process.off('unhandledRejection', onUnhandled)
  }
})

/** A store whose namespaces hold `sizes[namespace]` memories, of which `filtered` match any filter; it records how vectors were searched. */
function fakeStore(sizes: Record<string, number>, filtered: number) {
  const vectorSources: string[] = []
  const counted: string[] = []
  const db = {
    kind: 'pglite',
    async query<R>(sql: string, values: readonly unknown[] = []): Promise<QueryResult<R>> {
      if (sql.includes('namespace_statistics')) {
        return { rows: [{ memories: sizes[String(values[0])] ?? 0, terms: 0, term_frequencies: [] } as R], rowCount: 1 }
      }
      if (sql.includes('AS capped')) {
        counted.push(String(values[0]))
        // The statement counts at most one past the limit.
        assert.match(sql, /LIMIT 6\b/)
        return { rows: [{ n: filtered } as R], rowCount: 1 }
      }
      if (sql.includes('<=>') && !sql.includes('to_tsquery')) vectorSources.push(sql.includes('memory_vectors') ? 'graph' : 'exact')
      return { rows: [], rowCount: 0 }
    },
    async exec() {}
  } as unknown as Database
  return { db, vectorSources, counted }
}

test('a namespace of at most exactSearchMaxRows memories is searched exactly, a bigger one through the graph', async () => {
  const { db, vectorSources, counted } = fakeStore({ small: 5, big: 6 }, 6)
  const recall = createRecall(db, 4, { exactSearchMaxRows: 5, embedderKind: 'lexical' })
  const ask = (namespace: string) => recall.recall({ namespace, mode: 'vector', k: 5, vector: [1, 0, 0, 0], terms: [] })
  await ask('small')
  await ask('big')
  assert.deepEqual(vectorSources, ['exact', 'graph'])
  assert.deepEqual(counted, [], 'no filter: the namespace size alone decides')
})

test('a filter that few memories pass is searched exactly, whatever the namespace size; its count is kept', async () => {
  const selective = fakeStore({ big: 1_000 }, 3)
  const recall = createRecall(selective.db, 4, { exactSearchMaxRows: 5, embedderKind: 'lexical' })
  const ask = () => recall.recall({ namespace: 'big', mode: 'vector', k: 5, vector: [1, 0, 0, 0], terms: [], filter: { tags: ['rare'] } })
  await ask()
  await ask()
  assert.deepEqual(selective.vectorSources, ['exact', 'exact'])
  assert.deepEqual(selective.counted, ['big'], 'counted once within the minute')

  const broad = fakeStore({ big: 1_000 }, 6)
  await createRecall(broad.db, 4, { exactSearchMaxRows: 5, embedderKind: 'lexical' })
    .recall({ namespace: 'big', mode: 'vector', k: 5, vector: [1, 0, 0, 0], terms: [], filter: { role: ['user'] } })
  assert.deepEqual(broad.vectorSources, ['graph'])
})

test('vector mode sends the text statement only when it searches the graph: an exact search misses no neighbour', async () => {
  const sent: string[] = []
  const db = {
    async query<R>(sql: string): Promise<QueryResult<R>> {
      sent.push(sql.includes('to_tsquery') ? 'text' : sql.includes('memory_vectors') ? 'graph' : 'exact')
      return { rows: [], rowCount: 0 }
    },
    async exec() {}
  }
  const query = createRecallQuery(db, 4)
  await query.candidates({ ...params, mode: 'vector', exact: true })
  assert.deepEqual(sent, ['exact'])
  sent.length = 0
  await query.candidates({ ...params, mode: 'vector', exact: false })
  assert.deepEqual(sent.sort(), ['graph', 'text'])
  sent.length = 0
  await query.candidates({ ...params, mode: 'hybrid', exact: true })
  assert.deepEqual(sent.sort(), ['exact', 'text'])
})
