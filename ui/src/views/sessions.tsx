import { api, query, type SessionSummary } from '../api'
import { number, when } from '../format'
import { useLoad } from '../load'
import { href } from '../route'

/** The namespace's sessions, most recently active first. */
export function Sessions({ namespace }: { namespace: string }) {
  const sessions = useLoad(() => api<{ items: SessionSummary[] }>(`/v1/sessions?${query({ namespace, limit: 200 })}`), [namespace])
  const items = sessions.data?.items
  return (
    <section aria-labelledby="sessions-title">
      <h2 id="sessions-title">Sessions of {namespace}</h2>
      <p class="status" role="status">{sessions.error ? sessions.error.message : sessions.loading && !items ? 'Loading…' : ''}</p>
      {items?.length === 0 && <p class="empty">No sessions in {namespace} yet.</p>}
      <ol class="sessions" aria-busy={sessions.loading}>
        {items?.map((s) => (
          <li key={s.session_id}>
            <a href={href('session', { ns: namespace, id: s.session_id })}>
              <span class="session-id">{s.session_id}</span>
              <span class="session-meta">{number(s.count)} {s.count === 1 ? 'memory' : 'memories'} · {when(s.first_at)} – {when(s.last_at)}</span>
            </a>
          </li>
        ))}
      </ol>
    </section>
  )
}
