import assert from 'node:assert/strict'
import { test } from 'node:test'
import type { Queryable, QueryResult } from '../../src/db/database.js'
import { createRecallQuery } from '../../src/memory/recall-query.js'

// Recall sends its vector and text statements at once; these tests watch how, over a store that fails on cue.

test('a recall whose vector side fails while the term statistics load rejects, with no unhandled rejection', async () => {
  const unhandled: unknown[] = []
  const onUnhandled = (reason: unknown) => unhandled.push(reason)
  process.on('unhandledRejection', onUnhandled)
  try {
    const sent: string[] = []
    const db: Queryable = {
      async query<R>(sql: string): Promise<QueryResult<R>> {
        if (sql.includes('pg_stats')) {
          // Term statistics come slowly: a vector statement sent before them would fail unobserved meanwhile.
          await new Promise((resolve) => setTimeout(resolve, 50))
          return { rows: [], rowCount: 0 }
        }
        sent.push(sql.includes('memory_vectors') ? 'vector' : 'text')
        throw new Error('connection terminated')
      },
      async exec() {}
    }
    const recallQuery = createRecallQuery(db, 4)
    await assert.rejects(
      recallQuery.recall({ namespace: 'ns', mode: 'hybrid', k: 5, vector: [1, 0, 0, 0], terms: ['ledger', 'export'] }),
      /connection terminated/
    )
    await new Promise((resolve) => setTimeout(resolve, 100))
    assert.deepEqual(sent.sort(), ['text', 'vector'])
    assert.deepEqual(unhandled, [])
  } finally {
    process.off('unhandledRejection', onUnhandled)
  }
})

test('a namespace of at most exactSearchMaxRows memories is searched exactly, a bigger one through the graph; sizes are kept', async () => {
  const sizes: Record<string, number> = { small: 5, big: 6 }
  const counted: string[] = []
  const vectorSources: string[] = []
  const db: Queryable = {
    async query<R>(sql: string, params: readonly unknown[] = []): Promise<QueryResult<R>> {
      if (sql.includes('AS capped')) {
        const namespace = String(params[0])
        counted.push(namespace)
        // The statement counts at most one past the limit.
        assert.match(sql, /LIMIT 6\b/)
        return { rows: [{ n: sizes[namespace] } as R], rowCount: 1 }
      }
      if (sql.includes('<=>') && !sql.includes('ts_rank') && !sql.includes('to_tsquery')) {
        vectorSources.push(sql.includes('memory_vectors') ? 'graph' : 'exact')
      }
      return { rows: [], rowCount: 0 }
    },
    async exec() {}
  }
  const recallQuery = createRecallQuery(db, 4, { exactSearchMaxRows: 5 })
  const recall = (namespace: string) => recallQuery.recall({ namespace, mode: 'vector', k: 5, vector: [1, 0, 0, 0], terms: [] })
  await recall('small')
  await recall('big')
  await recall('small')
  await recall('big')
  assert.deepEqual(vectorSources, ['exact', 'graph', 'exact', 'graph'])
  assert.deepEqual(counted, ['small', 'big'], 'each namespace counted once within the minute')
  // Text mode needs no count: it never searches vectors.
  await recallQuery.recall({ namespace: 'other', mode: 'text', k: 5, terms: ['ledger'] })
  assert.deepEqual(counted, ['small', 'big'])
})
