import type { Queryable } from '../db/database.js'

/** The vector backlog (see migrations/003_vector_index.sql): what the background indexer moves into the HNSW graph. */
export function createVectorBacklog(db: Queryable) {
  return {
    /**
     * Moves up to `limit` vectors from the backlog into the HNSW-indexed table, in one transaction; replicas
     * share the work (SKIP LOCKED). Answers how many backlog entries it took.
     */
    async indexBacklog(limit: number): Promise<{ taken: number; indexed: number }> {
      const { rows } = await db.query<{ taken: number; indexed: number }>(
        `WITH taken AS (
           -- ARRAY(…) runs the claim once; as IN (…) the planner may rerun it for every backlog row.
           DELETE FROM vector_backlog WHERE id = ANY(ARRAY(SELECT id FROM vector_backlog LIMIT $1 FOR UPDATE SKIP LOCKED))
           RETURNING id),
         indexed AS (
           INSERT INTO memory_vectors (id, embedding)
           SELECT m.id, m.embedding FROM taken JOIN memories m ON m.id = taken.id WHERE m.embedding IS NOT NULL
           ON CONFLICT (id) DO UPDATE SET embedding = EXCLUDED.embedding
           RETURNING id)
         SELECT (SELECT count(*) FROM taken)::int AS taken, (SELECT count(*) FROM indexed)::int AS indexed`,
        [limit]
      )
      return { taken: rows[0]?.taken ?? 0, indexed: rows[0]?.indexed ?? 0 }
    },

    /**
     * Removes vectors whose memory is gone. Deletes wait for indexing rounds (see AWAIT_INDEXING_OF_ONE), but a
     * memory saved while its namespace was being deleted can still race a round; this sweeps what that leaves.
     */
    async sweepOrphanVectors(): Promise<number> {
      const { rowCount } = await db.query('DELETE FROM memory_vectors mv WHERE NOT EXISTS (SELECT 1 FROM memories m WHERE m.id = mv.id)')
      return rowCount
    },

    /** Refreshes the planner's statistics of the tables recall plans over; answers the vectors' estimated count. */
    async analyze(): Promise<number> {
      await db.query('ANALYZE memories, memory_vectors')
      const { rows } = await db.query<{ n: number }>("SELECT greatest(reltuples, 0)::float8 AS n FROM pg_class WHERE oid = 'memory_vectors'::regclass")
      return Number(rows[0]?.n ?? 0)
    },

    /**
     * Housekeeping once the indexer emptied the backlog, for stores no autovacuum looks after (PGlite has none; a
     * Postgres's may lag a bulk import): recalls read the backlog's dead entries and the full-text index's pending
     * list until they are vacuumed or merged (BENCHMARKS.md, "Figures behind the code"). Both are quick.
     */
    async tidy(): Promise<void> {
      // SKIP_LOCKED: when another replica or autovacuum is at it already, there is nothing to add.
      await db.query('VACUUM (SKIP_LOCKED) vector_backlog')
      await db.query(
        `SELECT gin_clean_pending_list(c.oid) FROM pg_class c JOIN pg_index i ON i.indexrelid = c.oid
         WHERE i.indrelid = 'memories'::regclass AND c.relam = (SELECT oid FROM pg_am WHERE amname = 'gin')`
      )
    },

    async countVectorBacklog(): Promise<number> {
      const { rows } = await db.query<{ n: number }>('SELECT count(*)::int AS n FROM vector_backlog')
      return rows[0]?.n ?? 0
    }
  }
}

export type VectorBacklog = ReturnType<typeof createVectorBacklog>
