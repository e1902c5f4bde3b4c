import { Type } from 'typebox'
import { DEFAULTS, LIMITS, Memory, Namespace, SessionId, Timestamp } from '../memory/memory-schemas.js'
import { INJECTION_OUTCOMES } from './injection-store.js'

/** GET /v1/injections and the hook's dry run: what was (or would be) injected, and why. */

export const InjectionsQuery = Type.Object(
  {
    namespace: Type.Optional(Namespace),
    session_id: Type.Optional(SessionId),
    limit: Type.Optional(Type.Integer({ minimum: 1, maximum: LIMITS.listLimit, default: DEFAULTS.listLimit })),
    cursor: Type.Optional(Type.String({ minLength: 1, maxLength: 512 }))
  },
  { additionalProperties: false }
)

const HitFields = {
  id: Type.String({ format: 'uuid' }),
  injected: Type.Boolean({ description: 'Whether it went into the context' }),
  rule: Type.String({
    description: 'What decided: score_and_terms or strong_vector (injected), latest_summary or recent_session (SessionStart); ' +
      'below_threshold, too_few_terms, same_prompt or over_budget (left out)'
  }),
  score: Type.Optional(Type.Number()),
  scores: Type.Optional(Type.Object({}, { additionalProperties: true }))
}

/** Open: whatever the recall says of a hit (score, scores, matched terms, …) is kept as it came. */
export const TracedHit = Type.Object(HitFields, { additionalProperties: true })
const StoredHit = Type.Object(
  { ...HitFields, memory: Type.Union([Memory, Type.Null()], { description: 'The memory as stored now; null once forgotten' }) },
  { additionalProperties: true }
)

const InjectionFields = {
  namespace: Type.String(),
  session_id: Type.Union([Type.String(), Type.Null()]),
  event: Type.Enum(['UserPromptSubmit', 'SessionStart']),
  prompt: Type.Union([Type.String(), Type.Null()]),
  outcome: Type.Enum(INJECTION_OUTCOMES, {
    description: 'injected, or why nothing was: nothing_recalled, none_relevant (every hit left out), deadline, unavailable (the database), ' +
      'save_only (the project says so), no_history (SessionStart with no earlier session)'
  }),
  took_ms: Type.Number()
}

export const Injection = Type.Object({
  id: Type.String(),
  created_at: Timestamp,
  ...InjectionFields,
  prompt_memory_id: Type.Union([Type.String(), Type.Null()]),
  hits: Type.Array(StoredHit)
})

export const InjectionsResult = Type.Object({ items: Type.Array(Injection), next_cursor: Type.Union([Type.String(), Type.Null()]) })

export const DryRunInjection = Type.Object({ ...InjectionFields, hits: Type.Array(TracedHit) })
