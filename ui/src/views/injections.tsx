import { api, query, type Injection, type TracedHit } from '../api'
import { excerpt, when } from '../format'
import { useLoad } from '../load'
import { href } from '../route'
import { Scores } from '../scores'

/** What each outcome means, in the user's words; an outcome this page does not know is shown as it is. */
const OUTCOMES: Record<string, string> = {
  injected: 'Injected into the prompt',
  nothing_recalled: 'Nothing injected: recall found nothing in this namespace',
  none_relevant: 'Nothing injected: no memory recalled was relevant enough',
  deadline: 'Nothing injected: Sage missed the hook deadline (HOOK_DEADLINE_MS) and answered {}',
  unavailable: 'Nothing injected: the database was unavailable',
  save_only: 'Nothing injected: the project is save-only (.sage.json)',
  no_history: 'Nothing injected: no earlier session to sum up'
}

const RULES: Record<string, string> = {
  score_and_terms: 'score at least 0.35 and enough of the prompt’s words',
  strong_vector: 'its embedding alone is a strong match',
  latest_summary: 'the latest compaction summary',
  recent_session: 'from a recent session',
  below_threshold: 'score below the threshold',
  too_few_terms: 'shares too few of the prompt’s words',
  same_prompt: 'the prompt itself',
  over_budget: 'relevant, but past the token budget'
}

function Hit({ hit }: { hit: TracedHit }) {
  return (
    <li class={hit.injected ? 'hit injected' : 'hit left-out'}>
      <div class="verdict">
        <span class="badge">{hit.injected ? 'injected' : 'left out'}</span>
        <span class="rule" title={hit.rule}>{RULES[hit.rule] ?? hit.rule}</span>
      </div>
      <Scores hit={hit} />
      {hit.memory ? (
        <p class="content">
          <span class={`role role-${hit.memory.role}`}>{hit.memory.role}</span> {excerpt(hit.memory.content, 300)} <a href={href('memory', { id: hit.id })}>record</a>
        </p>
      ) : (
        <p class="content forgotten">This memory was forgotten since.</p>
      )}
    </li>
  )
}

/** Every UserPromptSubmit and SessionStart answered: when, the prompt, what was injected and why, or why nothing was. */
export function Injections({ namespace, sessionId }: { namespace: string; sessionId: string | null }) {
  const injections = useLoad(() => api<{ items: Injection[] }>(`/v1/injections?${query({ namespace, session_id: sessionId, limit: 100 })}`), [namespace, sessionId])
  const items = injections.data?.items
  return (
    <section aria-labelledby="injections-title">
      <h2 id="injections-title">Injections in {namespace}{sessionId && <> · session <code>{sessionId}</code></>}</h2>
      <div class="toolbar">
        {sessionId && <a href={href('injections', { ns: namespace })}>← every session</a>}
        <button type="button" onClick={injections.reload}>Refresh</button>
      </div>
      <p class="status" role="status">{injections.error ? injections.error.message : injections.loading && !items ? 'Loading…' : ''}</p>
      {items?.length === 0 && <p class="empty">No hook has asked for context in {namespace} yet.</p>}
      <ol class="injections" aria-busy={injections.loading}>
        {items?.map((injection) => {
          const injected = injection.hits.filter((h) => h.injected).length
          return (
            <li class={`injection outcome-${injection.outcome}`} key={injection.id}>
              <header>
                <span class="event">{injection.event}</span>
                <time dateTime={injection.created_at}>{when(injection.created_at)}</time>
                {injection.session_id && <a href={href('session', { ns: namespace, id: injection.session_id })}>session {injection.session_id.slice(0, 8)}</a>}
                <span class="took">{injection.took_ms.toFixed(1)} ms</span>
              </header>
              {injection.prompt !== null && <blockquote class="prompt">{injection.prompt}</blockquote>}
              <p class="outcome">
                {OUTCOMES[injection.outcome] ?? injection.outcome}
                {injection.outcome === 'injected' && `: ${injected} ${injected === 1 ? 'memory' : 'memories'}`}
              </p>
              {injection.hits.length > 0 && (
                <details open={injection.outcome === 'injected'}>
                  <summary>{injection.hits.length} {injection.hits.length === 1 ? 'memory' : 'memories'} considered</summary>
                  <ol class="hits">{injection.hits.map((hit) => <Hit hit={hit} key={hit.id} />)}</ol>
                </details>
              )}
            </li>
          )
        })}
      </ol>
    </section>
  )
}
