import type { EmbedderKind } from '../embedder/embedder.js'
import type { RecallHit } from '../memory/memory-schemas.js'

/**
 * When a recalled memory is worth the agent's context (docs/hooks.md, "Only what is relevant"): it holds
 * HOOK_MIN_MATCHED_TERMS of the prompt's terms (all of a one-term prompt's), or a semantic embedder finds it close by
 * meaning alone (HOOK_STRONG_VECTOR); the score floor refuses only the faintest matches (BENCHMARKS.md, "Figures behind the code").
 */
export const HOOK_MIN_SCORE = 0.03
export const HOOK_MIN_MATCHED_TERMS = 2
export const HOOK_STRONG_VECTOR = 0.5
/**
 * Compaction summaries are the agent's own condensed record of a stretch of work, denser in decisions than
 * any single turn: at equal match they are the better memory, so their score is multiplied by this for ranking
 * and the threshold. A multiplier keeps an unrelated summary unrelated.
 */
export const SUMMARY_BOOST = 1.25
export const SUMMARY_TAG = 'summary'

/** Which rule let a memory into the context, or kept it out. */
export type RelevanceRule = 'same_prompt' | 'below_threshold' | 'strong_vector' | 'score_and_terms' | 'too_few_terms'

export interface RelevanceVerdict {
  hit: RecallHit
  admitted: boolean
  rule: RelevanceRule
  /** The score ranked and judged by: the recall's, boosted for summaries. */
  score: number
}

export interface RelevanceContext {
  /** The prompt's distinct terms (as recall counts them). */
  promptTerms: number
  /** Whether a hit is the prompt itself, saved a moment ago. */
  isEcho: (hit: RecallHit) => boolean
  embedderKind: EmbedderKind
  minScore?: number
}

/** The score a hook ranks by: summaries first at equal match (not capped at 1, so a perfect summary still leads). */
export function boostedScore(hit: RecallHit): number {
  return hit.tags.includes(SUMMARY_TAG) ? hit.score * SUMMARY_BOOST : hit.score
}

/** One verdict a hit, in the order of `hits`: whether it is injected, and by which rule. */
export function judgeRelevance(hits: readonly RecallHit[], context: RelevanceContext): RelevanceVerdict[] {
  const minScore = context.minScore ?? HOOK_MIN_SCORE
  const needed = Math.max(1, Math.min(HOOK_MIN_MATCHED_TERMS, context.promptTerms))
  return hits.map((hit) => {
    const score = boostedScore(hit)
    const verdict = (admitted: boolean, rule: RelevanceRule): RelevanceVerdict => ({ hit, admitted, rule, score })
    if (context.isEcho(hit)) return verdict(false, 'same_prompt')
    if (score < minScore) return verdict(false, 'below_threshold')
    if (context.embedderKind === 'semantic' && (hit.scores.vector ?? 0) >= HOOK_STRONG_VECTOR) return verdict(true, 'strong_vector')
    if (hit.matched_terms.length >= needed) return verdict(true, 'score_and_terms')
    return verdict(false, 'too_few_terms')
  })
}
