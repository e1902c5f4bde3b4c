import assert from 'node:assert/strict'
import { test } from 'node:test'
import type { Queryable, QueryResult } from '../../src/db/database.js'
import { createMemoryRepository } from '../../src/memory/memory-repository.js'

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
    const repository = createMemoryRepository(db, 4)
    await assert.rejects(
      repository.recall({ namespace: 'ns', mode: 'hybrid', k: 5, vector: [1, 0, 0, 0], terms: ['ledger', 'export'] }),
      /connection terminated/
    )
    await new Promise((resolve) => setTimeout(resolve, 100))
    assert.deepEqual(sent.sort(), ['text', 'vector'])
    assert.deepEqual(unhandled, [])
  } finally {
    process.off('unhandledRejection', onUnhandled)
  }
})
