import assert from 'node:assert/strict'
import { test } from 'node:test'
import { judgeRelevance, HOOK_MIN_SCORE, SUMMARY_BOOST } from '../../src/hooks/hook-relevance.js'
import type { RecallHit } from '../../src/memory/memory-schemas.js'

function hit(id: string, score: number, matched: string[], extra: Partial<RecallHit> = {}): RecallHit {
  return {
    id, namespace: 'ns', session_id: 's', role: 'assistant', content: id, metadata: {}, tags: [], source_id: null,
    created_at: '2026-11-20T10:00:00.000Z', score, scores: { vector: 0.1, text: score }, matched_terms: matched, ...extra
  }
}

const context = { promptTerms: 4, isEcho: (h: RecallHit) => h.id === 'echo', embedderKind: 'lexical' as const }

test('each hit gets the rule that admitted or refused it', () => {
  const verdicts = judgeRelevance([
    hit('answer', 0.3, ['ledger', 'export']),
    hit('echo', 0.9, ['ledger', 'export', 'page']),
    hit('weak', HOOK_MIN_SCORE / 2, ['ledger', 'export']),
    hit('one-word', 0.3, ['fix']),
    hit('paraphrase', 0.2, [], { scores: { vector: 0.8, text: 0 } })
  ], context)
  assert.deepEqual(verdicts.map((v) => [v.hit.id, v.admitted, v.rule]), [
    ['answer', true, 'score_and_terms'],
    ['echo', false, 'same_prompt'],
    ['weak', false, 'below_threshold'],
    ['one-word', false, 'too_few_terms'],
    // A lexical embedder's similarity is shared words: it admits nothing alone.
    ['paraphrase', false, 'too_few_terms']
  ])
})

test('a semantic embedder\'s close match is admitted by meaning alone', () => {
  const [verdict] = judgeRelevance([hit('paraphrase', 0.2, [], { scores: { vector: 0.8, text: 0 } })], { ...context, embedderKind: 'semantic' })
  assert.deepEqual([verdict!.admitted, verdict!.rule], [true, 'strong_vector'])
})

test('a one-term prompt needs that term; a summary is judged by its boosted score', () => {
  const [one] = judgeRelevance([hit('pnpm', 0.2, ['pnpm'])], { ...context, promptTerms: 1 })
  assert.equal(one!.rule, 'score_and_terms')
  const [summary] = judgeRelevance([hit('sum', 0.07, ['ledger', 'export'], { tags: ['summary'] })], context)
  assert.equal(summary!.score, 0.07 * SUMMARY_BOOST)
  assert.equal(summary!.admitted, 0.07 * SUMMARY_BOOST >= HOOK_MIN_SCORE)
})
