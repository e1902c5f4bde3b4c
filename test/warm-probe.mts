import { startSage } from './support/sage-process.js'
async function main() {
const dir = process.argv[2]!
const env: Record<string,string> = process.env.DATABASE_URL ? { DATABASE_URL: process.env.DATABASE_URL } : { SAGE_DATA_DIR: dir }
const post = (url: string, path: string, body: unknown) => fetch(`${url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })
let s = await startSage(env, 120000)
const items = Array.from({ length: 300 }, (_, i) => ({ namespace: 'billing', session_id: `s${i % 10}`, role: 'assistant', content: `We switched the ledger export ${i} to keyset pagination with pages of 5,000 rows and streamed CSV number ${i}` }))
console.log('batch', (await post(s.url, '/v1/memories/batch', { items })).status)
await new Promise(r => setTimeout(r, 6000))
await s.stop()
for (let round = 0; round < 2; round++) {
  const t0 = Date.now()
  s = await startSage(env, 120000)
  console.log('start ms', Date.now() - t0)
  for (let i = 0; i < 3; i++) {
    const t = performance.now()
    const res = await post(s.url, '/hooks/claude-code', { hook_event_name: 'UserPromptSubmit', session_id: 'new-' + round + i, cwd: '/src/billing', prompt: 'how do we paginate the ledger export?', prompt_id: 'p' + round + i })
    const body = await res.text()
    console.log('hook', i, Math.round(performance.now() - t), 'ms', body.slice(0, 60))
  }
  await s.stop()
}

}
void main()
