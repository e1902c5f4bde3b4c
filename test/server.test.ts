import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, describe, test } from 'node:test'
import { createPgDatabase } from '../src/db/pg-database.js'
import { backends, createPostgresDatabase } from './helper.js'
import { startSage } from './support/sage-process.js'

const json = async (url: string, body?: unknown, method = body === undefined ? 'GET' : 'POST') => {
  const res = await fetch(url, { method, headers: body === undefined ? {} : { 'content-type': 'application/json' }, body: body === undefined ? undefined : JSON.stringify(body) })
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- assertions read whatever the service answered
  return { status: res.status, body: (res.status === 204 ? null : await res.json()) as any }
}

describe('the service as a process on the embedded store', () => {
  let dataDir: string
  after(async () => {
    if (dataDir) await rm(dataDir, { recursive: true, force: true })
  })

  test('serves with no database server, recalls a save first, and keeps it across a restart', async () => {
    dataDir = await mkdtemp(join(tmpdir(), 'sage-data-'))
    let sage = await startSage({ SAGE_DATA_DIR: dataDir })
    let id: string
    try {
      await json(`${sage.url}/v1/memories`, { namespace: 'demo', content: 'Decision: rotate the API keys every 90 days with the ops runbook.' })
      const saved = await json(`${sage.url}/v1/memories`, { namespace: 'demo', content: 'The flaky test was a race in the websocket reconnect handler.' })
      assert.equal(saved.status, 201)
      id = saved.body.id
      const recalled = await json(`${sage.url}/v1/recall`, { namespace: 'demo', query: 'why was the websocket test flaky?' })
      assert.equal(recalled.status, 200)
      assert.equal(recalled.body.results[0].id, id)
    } finally {
      assert.equal(await sage.stop('SIGTERM'), 0, sage.output())
    }

    sage = await startSage({ SAGE_DATA_DIR: dataDir })
    try {
      const read = await json(`${sage.url}/v1/memories/${id}`)
      assert.equal(read.status, 200)
      assert.match(read.body.content, /websocket reconnect/)
    } finally {
      assert.equal(await sage.stop('SIGTERM'), 0, sage.output())
    }
  })
})

if (backends().some((b) => b.name === 'postgres')) {
  describe('the service as a process on Postgres', () => {
    const bigBatch = (tag: string) => ({
      items: Array.from({ length: 1000 }, (_, i) => ({ namespace: 'sigterm', source_id: `${tag}-${i}`, content: `batch ${tag} item ${i} `.repeat(200) }))
    })

    test('SIGTERM mid-batch: the batch in flight finishes whole, then the process exits cleanly', async () => {
      const database = await createPostgresDatabase(process.env.TEST_DATABASE_URL!)
      const db = createPgDatabase({ url: database.url, poolMax: 2, statementTimeoutMs: 30_000 })
      const sage = await startSage({ DATABASE_URL: database.url })
      try {
        const pending = fetch(`${sage.url}/v1/memories/batch`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(bigBatch('term')) })
          .then((r) => r.status, () => 'refused')
        await new Promise((resolve) => setTimeout(resolve, 150))
        const exit = sage.stop('SIGTERM')
        const res = await pending
        assert.equal(await exit, 0, sage.output())
        const { rows } = await db.query<{ n: number }>('SELECT count(*)::int AS n FROM memories')
        // Graceful shutdown finishes what it accepted; had it not been accepted, nothing may be there.
        if (res === 201) assert.equal(rows[0]!.n, 1000)
        else assert.equal(rows[0]!.n, 0, `answer ${res} but ${rows[0]!.n} rows`)
      } finally {
        await sage.stop('SIGKILL')
        await db.close()
        await database.drop()
      }
    })

    test('a process killed mid-batch (SIGKILL) leaves nothing of it behind', async () => {
      const database = await createPostgresDatabase(process.env.TEST_DATABASE_URL!)
      const db = createPgDatabase({ url: database.url, poolMax: 2, statementTimeoutMs: 30_000 })
      const sage = await startSage({ DATABASE_URL: database.url })
      try {
        const pending = fetch(`${sage.url}/v1/memories/batch`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(bigBatch('kill')) })
          .then((r) => r.status, () => 'killed')
        await new Promise((resolve) => setTimeout(resolve, 200))
        await sage.stop('SIGKILL')
        const res = await pending
        // Postgres rolls back the open transaction when the connection of a killed client closes.
        await new Promise((resolve) => setTimeout(resolve, 500))
        const { rows } = await db.query<{ n: number }>('SELECT count(*)::int AS n FROM memories')
        assert.ok(rows[0]!.n === 0 || rows[0]!.n === 1000, `a killed batch left ${rows[0]!.n} of 1000 rows (answer: ${res})`)
      } finally {
        await db.close()
        await database.drop()
      }
    })
  })
}
