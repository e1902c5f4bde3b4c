import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { backends, useTestApp } from '../../helper.js'

const SECRETS = { scoped: 'scoped-secret-0123456789abcdef', reader: 'reader-secret-0123456789abcdef', root: 'root-secret-0123456789abcdef00' }
const KEYS = `scoped:${SECRETS.scoped}=team-a/*:delete;reader:${SECRETS.reader}=*;root:${SECRETS.root}=*:delete`

for (const backend of backends()) {
  describe(`POST /v1/admin/reembed on ${backend.name}`, () => {
    const suite = useTestApp(backend, { SAGE_API_KEYS: KEYS })
    const as = (secret: string | undefined, url: string, payload?: object) =>
      suite.app.inject({ method: 'POST', url, headers: secret ? { authorization: `Bearer ${secret}` } : {}, payload })

    test('needs a key of scope * that may delete; it clears every vector and the backfill puts them back', async () => {
      const saved = await as(SECRETS.root, '/v1/memories/batch', { items: [{ namespace: 'team-a/x', content: 'rotate the keys' }, { namespace: 'b', content: 'pin pnpm 9' }] })
      assert.equal(saved.statusCode, 201, saved.body)
      assert.equal((await as(undefined, '/v1/admin/reembed')).statusCode, 401)
      for (const secret of [SECRETS.scoped, SECRETS.reader]) {
        const refused = await as(secret, '/v1/admin/reembed')
        assert.equal(refused.statusCode, 403, refused.body)
        assert.match(refused.json().message, /scope \* that may delete/)
      }
      const embedded = async () => (await suite.store.db.query<{ n: number }>('SELECT count(*)::int AS n FROM memories WHERE embedding IS NOT NULL')).rows[0]!.n
      assert.equal(await embedded(), 2, 'refusals changed nothing')
      const res = await as(SECRETS.root, '/v1/admin/reembed')
      assert.equal(res.statusCode, 200, res.body)
      assert.deepEqual(res.json(), { embedder: suite.app.embedder.id, cleared: 2 })
      assert.equal(await embedded(), 0)
      assert.equal(await suite.app.backfill.runOnce(), 2)
      assert.equal(await embedded(), 2)
    })
  })
}
