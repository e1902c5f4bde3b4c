import { MEMORY_FIELDS } from './api'
import { score } from './format'

/** Fields a hit shows on its own; anything else the recall answers is listed too, so new fields appear by themselves. */
const SHOWN = new Set([...MEMORY_FIELDS, 'score', 'scores', 'matched_terms', 'memory', 'injected', 'rule'])

const label = (name: string) => name.replace(/_/g, ' ')

function value(v: unknown): string {
  if (typeof v === 'number') return score(v)
  if (Array.isArray(v)) return v.join(', ')
  return typeof v === 'string' ? v : JSON.stringify(v)
}

/** A hit's score, each of its scores, its matched terms and any other field. */
export function Scores({ hit }: { hit: Record<string, unknown> }) {
  const scores = (hit.scores ?? {}) as Record<string, unknown>
  const terms = Array.isArray(hit.matched_terms) ? (hit.matched_terms as unknown[]) : undefined
  const extra = Object.entries(hit).filter(([name]) => !SHOWN.has(name))
  return (
    <dl class="scores">
      {hit.score !== undefined && (
        <div class="score-main">
          <dt>score</dt>
          <dd>{score(hit.score)}</dd>
        </div>
      )}
      {Object.entries(scores).map(([name, v]) => (
        <div key={name}>
          <dt>{label(name)}</dt>
          <dd>{value(v)}</dd>
        </div>
      ))}
      {terms && (
        <div class="terms">
          <dt>matched terms</dt>
          <dd>{terms.length === 0 ? '—' : terms.map((term) => <span class="term" key={String(term)}>{String(term)}</span>)}</dd>
        </div>
      )}
      {extra.map(([name, v]) => (
        <div key={name}>
          <dt>{label(name)}</dt>
          <dd>{value(v)}</dd>
        </div>
      ))}
    </dl>
  )
}
