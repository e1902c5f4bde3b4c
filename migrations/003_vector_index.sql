-- The vector index moves beside the memories, and vectors enter it in the background. Inserting into an HNSW
-- graph costs about 2 ms a vector on two cores, ten times the rest of a save; a save now only lists its memory
-- in vector_backlog, recall searches the listed ones exactly, and the vector indexer (src/memory/vector-indexer.ts)
-- moves them into memory_vectors, whose HNSW index is built per embedder dimension at start (embedder-binding.ts).
-- memories.embedding stays the vector of record (backfill, reembed and scoring read it); memory_vectors is its index.
-- No foreign keys: each would add a lookup to every save; the repository deletes from all three tables together.
CREATE TABLE memory_vectors (
  id        uuid PRIMARY KEY,
  embedding vector NOT NULL
);

CREATE TABLE vector_backlog (
  id uuid PRIMARY KEY
);

-- Vectors already stored go straight into the table; the graph is built over them once, at the next start.
INSERT INTO memory_vectors (id, embedding) SELECT id, embedding FROM memories WHERE embedding IS NOT NULL;

DO $$
DECLARE
  old_index record;
BEGIN
  FOR old_index IN SELECT indexname FROM pg_indexes
                   WHERE schemaname = current_schema() AND tablename = 'memories' AND indexname LIKE 'memories_embedding_hnsw_%'
  LOOP
    EXECUTE format('DROP INDEX %I', old_index.indexname);
  END LOOP;
END $$;
