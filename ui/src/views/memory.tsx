import { api, query, type Access, type Memory } from '../api'
import { when } from '../format'
import { useLoad } from '../load'
import { go, href } from '../route'

/** A memory's full record. */
export function MemoryRecord({ id, access, confirm }: { id: string; access: Access; confirm: (q: string, a: string) => Promise<boolean> }) {
  const memory = useLoad(() => api<Memory>(`/v1/memories/${encodeURIComponent(id)}`), [id])
  const m = memory.data
  const remove = async () => {
    if (!m || !(await confirm(`Delete this ${m.role} memory? It cannot be undone.`, 'Delete memory'))) return
    await api(`/v1/memories/${m.id}`, { method: 'DELETE' })
    if (m.session_id) go('session', { ns: m.namespace, id: m.session_id })
    else go('sessions', { ns: m.namespace })
  }
  return (
    <section aria-labelledby="memory-title">
      <h2 id="memory-title">Memory</h2>
      <p class="status" role="status">{memory.error ? memory.error.message : memory.loading && !m ? 'Loading…' : ''}</p>
      {m && (
        <article class="record">
          <dl>
            <dt>id</dt><dd><code>{m.id}</code></dd>
            <dt>namespace</dt><dd>{m.namespace}</dd>
            <dt>session</dt><dd>{m.session_id ? <a href={`#/session?${query({ ns: m.namespace, id: m.session_id })}`}>{m.session_id}</a> : '—'}</dd>
            <dt>role</dt><dd>{m.role}</dd>
            <dt>created</dt><dd><time dateTime={m.created_at}>{when(m.created_at)}</time> <code>{m.created_at}</code></dd>
            <dt>tags</dt><dd>{m.tags.length ? m.tags.join(', ') : '—'}</dd>
            <dt>source id</dt><dd>{m.source_id ?? '—'}</dd>
            <dt>metadata</dt><dd><pre>{JSON.stringify(m.metadata, null, 2)}</pre></dd>
          </dl>
          <h3>Content</h3>
          <pre class="content full">{m.content}</pre>
          <div class="toolbar">
            <a href={href('sessions', { ns: m.namespace })}>← sessions of {m.namespace}</a>
            {access.can_delete && <button type="button" class="danger" onClick={remove}>Delete memory</button>}
          </div>
        </article>
      )}
    </section>
  )
}
