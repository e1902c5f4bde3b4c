import { api, query, type Access, type Memory } from '../api'
import { useLoad } from '../load'
import { go, href } from '../route'
import { MemoryItem } from './memory-item'

const PAGE = 500
const MAX_PAGES = 20

/** One session's memories in the order they happened, oldest first. */
export function Session({ namespace, sessionId, access, confirm }: { namespace: string; sessionId: string; access: Access; confirm: (q: string, a: string) => Promise<boolean> }) {
  const memories = useLoad(async () => {
    const items: Memory[] = []
    let cursor: string | undefined
    for (let page = 0; page < MAX_PAGES; page++) {
      const answer = await api<{ items: Memory[]; next_cursor: string | null }>(`/v1/memories?${query({ namespace, session_id: sessionId, limit: PAGE, cursor })}`)
      items.push(...answer.items)
      if (!answer.next_cursor) break
      cursor = answer.next_cursor
    }
    return items.reverse()
  }, [namespace, sessionId])

  const deleteMemory = async (memory: Memory) => {
    if (!(await confirm(`Delete this ${memory.role} memory of ${memory.created_at.slice(0, 10)}? It cannot be undone.`, 'Delete memory'))) return
    await api(`/v1/memories/${memory.id}`, { method: 'DELETE' })
    memories.reload()
  }
  const deleteSession = async () => {
    if (!(await confirm(`Delete session ${sessionId} and its ${memories.data?.length ?? ''} memories? It cannot be undone.`, 'Delete session'))) return
    await api(`/v1/memories?${query({ namespace, session_id: sessionId })}`, { method: 'DELETE' })
    go('sessions', { ns: namespace })
  }

  const items = memories.data
  return (
    <section aria-labelledby="session-title">
      <h2 id="session-title">Session <code>{sessionId}</code></h2>
      <div class="toolbar">
        <a href={href('sessions', { ns: namespace })}>← all sessions</a>
        <a href={href('injections', { ns: namespace, session: sessionId })}>its injections</a>
        {access.can_delete && <button type="button" class="danger" onClick={deleteSession}>Delete session</button>}
      </div>
      <p class="status" role="status">{memories.error ? memories.error.message : memories.loading && !items ? 'Loading…' : items ? `${items.length} memories, oldest first` : ''}</p>
      <div class="timeline" aria-busy={memories.loading}>
        {items?.map((memory) => <MemoryItem memory={memory} key={memory.id} onDelete={access.can_delete ? () => void deleteMemory(memory) : undefined} />)}
      </div>
    </section>
  )
}
