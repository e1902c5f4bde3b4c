import { useEffect, useRef, useState } from 'preact/hooks'
import { api, query, type RecallHit } from '../api'
import { useLoad } from '../load'
import { go } from '../route'
import { Scores } from '../scores'
import { MemoryItem } from './memory-item'

const MODES = ['hybrid', 'text', 'vector'] as const

/** Recall, as the hooks do it (hybrid by default), each hit with its scores and matched terms. */
export function Search({ namespace, params }: { namespace: string; params: URLSearchParams }) {
  const q = params.get('q') ?? ''
  const mode = params.get('mode') ?? 'hybrid'
  const [text, setText] = useState(q)
  const input = useRef<HTMLInputElement>(null)
  useEffect(() => setText(q), [q])
  useEffect(() => input.current?.focus(), [])
  const results = useLoad(
    async () => (q === '' ? undefined : api<{ results: RecallHit[]; took_ms: number }>('/v1/recall', { method: 'POST', body: { namespace, query: q, mode, k: 20 } })),
    [namespace, q, mode]
  )
  const submit = (event: Event) => {
    event.preventDefault()
    go('search', { ns: namespace, q: text.trim(), mode })
  }
  const hits = results.data?.results
  return (
    <section aria-labelledby="search-title">
      <h2 id="search-title">Search</h2>
      <form class="search" role="search" onSubmit={submit}>
        <label for="q" class="visually-hidden">Search memories of {namespace}</label>
        <input id="q" ref={input} type="search" placeholder={`Search ${namespace}…`} value={text} onInput={(e) => setText((e.target as HTMLInputElement).value)} />
        <label for="mode" class="visually-hidden">Mode</label>
        <select id="mode" value={mode} onChange={(e) => go('search', { ns: namespace, q: text.trim(), mode: (e.target as HTMLSelectElement).value })}>
          {MODES.map((m) => <option key={m} value={m}>{m}</option>)}
        </select>
        <button type="submit">Search</button>
      </form>
      <p class="status" role="status" aria-live="polite">
        {results.loading && q !== '' ? 'Searching…' : results.error ? results.error.message : hits ? `${hits.length} ${hits.length === 1 ? 'memory' : 'memories'} in ${results.data!.took_ms} ms` : ''}
      </p>
      <div class="results" aria-busy={results.loading}>
        {hits?.length === 0 && <p class="empty">Nothing found for “{q}”.</p>}
        {hits?.map((hit, rank) => (
          <MemoryItem memory={hit} key={hit.id}>
            <div class="hit-meta">
              <span class="rank">#{rank + 1}</span>
              <Scores hit={hit} />
              {hit.session_id && <a href={`#/session?${query({ ns: namespace, id: hit.session_id })}`}>session {hit.session_id.slice(0, 8)}</a>}
            </div>
          </MemoryItem>
        ))}
      </div>
    </section>
  )
}
