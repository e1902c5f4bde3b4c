import type { NamespaceSummary } from '../api'
import { number, when } from '../format'
import { href } from '../route'

const ROLES = ['user', 'assistant', 'note', 'tool', 'system'] as const

/** Memories per namespace and role, and the last day's saves and recalls. */
export function Overview({ namespaces }: { namespaces: NamespaceSummary[] }) {
  const total = (pick: (n: NamespaceSummary) => number) => namespaces.reduce((sum, n) => sum + pick(n), 0)
  return (
    <section aria-labelledby="overview-title">
      <h2 id="overview-title">Overview</h2>
      <div class="cards">
        <div class="card"><span class="figure">{number(total((n) => n.count))}</span> memories</div>
        <div class="card"><span class="figure">{number(namespaces.length)}</span> namespaces</div>
        <div class="card"><span class="figure">{number(total((n) => n.saves_24h))}</span> saves in the last day</div>
        <div class="card"><span class="figure">{number(total((n) => n.recalls_24h))}</span> recalls in the last day</div>
      </div>
      {namespaces.length === 0 ? (
        <p class="empty">No memories yet. Install the hooks (sage-memory hooks install) and start a session.</p>
      ) : (
        <div class="table-wrap">
          <table class="overview">
            <thead>
              <tr>
                <th scope="col">Namespace</th>
                <th scope="col" class="num">Memories</th>
                {ROLES.map((role) => <th scope="col" class="num" key={role}>{role}</th>)}
                <th scope="col" class="num">Saves (24 h)</th>
                <th scope="col" class="num">Recalls (24 h)</th>
                <th scope="col">Last activity</th>
              </tr>
            </thead>
            <tbody>
              {namespaces.map((n) => (
                <tr key={n.namespace}>
                  <th scope="row"><a href={href('sessions', { ns: n.namespace })}>{n.namespace}</a></th>
                  <td class="num" data-label="Memories">{number(n.count)}</td>
                  {ROLES.map((role) => <td class="num" data-label={role} key={role}>{number(n.roles[role] ?? 0)}</td>)}
                  <td class="num" data-label="Saves (24 h)">{number(n.saves_24h)}</td>
                  <td class="num" data-label="Recalls (24 h)">{number(n.recalls_24h)}</td>
                  <td data-label="Last activity">{when(n.last_activity_at)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </section>
  )
}
