import type { Memory } from '../api'
import { excerpt, when } from '../format'
import { href } from '../route'

/** One memory in a list: who, when, what; its id opens the full record. */
export function MemoryItem({ memory, full = false, onDelete, children }: { memory: Memory; full?: boolean; onDelete?: () => void; children?: preact.ComponentChildren }) {
  return (
    <article class="memory" data-id={memory.id}>
      <header>
        <span class={`role role-${memory.role}`}>{memory.role}</span>
        {memory.tags.map((tag) => <span class="tag" key={tag}>#{tag}</span>)}
        <time dateTime={memory.created_at}>{when(memory.created_at)}</time>
        <a class="open" href={href('memory', { id: memory.id })} aria-label={`Open memory ${memory.id}`}>record</a>
        {onDelete && <button type="button" class="danger small" onClick={onDelete} aria-label={`Delete memory ${memory.id}`}>Delete</button>}
      </header>
      <p class="content">{full ? memory.content : excerpt(memory.content, 600)}</p>
      {children}
    </article>
  )
}
