import type { Queryable } from '../db/database.js'

/** What BM25 needs of a namespace: its size, its memories' mean length and the frequency of each query term. */
export interface NamespaceTermStatistics {
  /** Memories in the namespace. */
  memories: number
  /** Mean distinct terms a memory of the namespace holds. */
  averageLength: number
  /** In how many of the namespace's memories each asked term occurs (0 for a term none holds). */
  frequencies: Map<string, number>
}

/** Only one replica folds at a time: two folds updating the same counters in different orders could deadlock. */
const FOLD_LOCK_KEY = 7_286_813_005

/**
 * The term counters of migrations/005_term_statistics.sql: read for a recall (counters plus what still waits for the
 * fold, so exact at any moment), and folded in the background.
 */
export function createTermStatistics(db: Queryable) {
  return {
    async read(namespace: string, terms: readonly string[], via: Queryable = db): Promise<NamespaceTermStatistics> {
      // The backlog is what saves listed since the last fold: a handful on a quiet service, read whole.
      const { rows } = await via.query<{ memories: string | number; terms: string | number; term_frequencies: Array<string | number> }>(
        `WITH pending AS MATERIALIZED (
           SELECT m.search_terms FROM term_backlog b JOIN memories m ON m.id = b.id WHERE m.namespace = $1),
         gone AS MATERIALIZED (SELECT search_terms FROM term_removals WHERE namespace = $1),
         changes AS (
           SELECT t.term, count(*) AS n FROM pending, unnest(tsvector_to_array(pending.search_terms)) AS t(term)
           WHERE t.term = ANY($2::text[]) GROUP BY 1
           UNION ALL
           SELECT t.term, -count(*) FROM gone, unnest(tsvector_to_array(gone.search_terms)) AS t(term)
           WHERE t.term = ANY($2::text[]) GROUP BY 1)
         SELECT
           coalesce((SELECT memories FROM namespace_statistics WHERE namespace = $1), 0)
             + (SELECT count(*) FROM pending) - (SELECT count(*) FROM gone) AS memories,
           coalesce((SELECT terms FROM namespace_statistics WHERE namespace = $1), 0)
             + coalesce((SELECT sum(length(search_terms)) FROM pending), 0)
             - coalesce((SELECT sum(length(search_terms)) FROM gone), 0) AS terms,
           ARRAY(SELECT coalesce((SELECT f.memories FROM term_frequencies f WHERE f.namespace = $1 AND f.term = q.term), 0)
                        + coalesce((SELECT sum(c.n) FROM changes c WHERE c.term = q.term), 0)
                 FROM unnest($2::text[]) WITH ORDINALITY AS q(term, i) ORDER BY q.i) AS term_frequencies`,
        [namespace, terms]
      )
      const row = rows[0]
      const memories = Math.max(0, Number(row?.memories ?? 0))
      const frequencies = new Map<string, number>()
      terms.forEach((term, i) => frequencies.set(term, Math.max(0, Number(row?.term_frequencies[i] ?? 0))))
      return { memories, averageLength: memories > 0 ? Math.max(1, Number(row?.terms ?? 0) / memories) : 1, frequencies }
    },

    /**
     * Moves up to `limit` saved and `limit` removed memories into the counters, in one statement, and answers how
     * many it moved (0 when another replica is folding, or nothing waits). Each side stops once its memories hold
     * `termBudget` terms (taking at least one), so a statement's work is bounded by terms, not memories: a batch of
     * long texts of unique tokens would otherwise make a fold that never ends within the statement timeout.
     * Counters left at zero are dropped.
     */
    async fold(limit: number, termBudget: number): Promise<number> {
      // One statement, not a transaction of several: no pooled connection is held between statements, where a
      // server going away would be an error with no query to take it. The lock is the statement's own.
      const { rows } = await db.query<{ moved: number; zero_namespaces: string[]; zero_terms: string[]; empty_namespaces: string[] }>(
        `WITH locked AS MATERIALIZED (SELECT pg_try_advisory_xact_lock($2) AS ok),
         taken AS (
           -- ARRAY(…) runs the claim once; as IN (…) the planner may rerun it for every backlog row.
           DELETE FROM term_backlog WHERE (SELECT ok FROM locked)
             AND id = ANY(ARRAY(
               SELECT id FROM (SELECT id, sum(len) OVER (ORDER BY id ROWS UNBOUNDED PRECEDING) - len AS before
                 FROM (SELECT b.id, coalesce(length(m.search_terms), 0) AS len FROM term_backlog b LEFT JOIN memories m ON m.id = b.id
                       LIMIT $1 FOR UPDATE OF b SKIP LOCKED) AS claimed) AS running
               WHERE before < $3))
           RETURNING id),
         removed AS (
           DELETE FROM term_removals WHERE (SELECT ok FROM locked)
             AND id = ANY(ARRAY(
               SELECT id FROM (SELECT id, sum(len) OVER (ORDER BY id ROWS UNBOUNDED PRECEDING) - len AS before
                 FROM (SELECT id, length(search_terms) AS len FROM term_removals LIMIT $1 FOR UPDATE SKIP LOCKED) AS claimed) AS running
               WHERE before < $3))
           RETURNING namespace, search_terms),
         changes AS (
           SELECT m.namespace, m.search_terms, 1 AS sign FROM taken JOIN memories m ON m.id = taken.id
           UNION ALL
           SELECT namespace, search_terms, -1 FROM removed),
         by_term AS (
           INSERT INTO term_frequencies AS f (namespace, term, memories)
           SELECT c.namespace, t.term, sum(c.sign) FROM changes c, unnest(tsvector_to_array(c.search_terms)) AS t(term)
           GROUP BY 1, 2 HAVING sum(c.sign) <> 0
           ON CONFLICT (namespace, term) DO UPDATE SET memories = f.memories + excluded.memories
           RETURNING f.namespace, f.term, f.memories),
         by_namespace AS (
           INSERT INTO namespace_statistics AS s (namespace, memories, terms)
           SELECT namespace, sum(sign), sum(sign * length(search_terms)) FROM changes GROUP BY 1
           ON CONFLICT (namespace) DO UPDATE SET memories = s.memories + excluded.memories, terms = s.terms + excluded.terms
           RETURNING s.namespace, s.memories)
         SELECT (SELECT count(*) FROM changes)::int AS moved,
                ARRAY(SELECT namespace FROM by_term WHERE memories <= 0 ORDER BY namespace, term) AS zero_namespaces,
                ARRAY(SELECT term FROM by_term WHERE memories <= 0 ORDER BY namespace, term) AS zero_terms,
                ARRAY(SELECT namespace FROM by_namespace WHERE memories <= 0) AS empty_namespaces`,
        [limit, FOLD_LOCK_KEY, termBudget]
      )
      const row = rows[0]
      // Counters at zero are dropped afterwards; one a later fold raised again is kept (the delete rechecks it).
      if (row && row.zero_terms.length > 0) {
        await db.query(
          `DELETE FROM term_frequencies f USING unnest($1::text[], $2::text[]) AS z(namespace, term)
           WHERE f.namespace = z.namespace AND f.term = z.term AND f.memories <= 0`,
          [row.zero_namespaces, row.zero_terms]
        )
      }
      if (row && row.empty_namespaces.length > 0) {
        await db.query('DELETE FROM namespace_statistics WHERE namespace = ANY($1::text[]) AND memories <= 0', [row.empty_namespaces])
      }
      return row?.moved ?? 0
    },

    /** Saved and removed memories the fold has not counted yet. */
    async backlog(): Promise<number> {
      const { rows } = await db.query<{ n: number }>('SELECT ((SELECT count(*) FROM term_backlog) + (SELECT count(*) FROM term_removals))::int AS n')
      return rows[0]?.n ?? 0
    }
  }
}

export type TermStatistics = ReturnType<typeof createTermStatistics>
