-- The memory table: one row per saved prompt, answer, decision or summary.
CREATE EXTENSION IF NOT EXISTS vector;

CREATE TABLE memories (
  id              uuid PRIMARY KEY,
  namespace       text NOT NULL,
  session_id      text,
  role            text NOT NULL CHECK (role IN ('user', 'assistant', 'system', 'tool', 'note')),
  content         text NOT NULL,
  metadata        jsonb NOT NULL DEFAULT '{}'::jsonb,
  tags            text[] NOT NULL DEFAULT '{}',
  source_id       text,
  idempotency_key text,
  created_at      timestamptz NOT NULL DEFAULT now(),
  -- Terms from Sage's own tokenizer (identifiers split, CJK bigrams), so full-text search needs no language config.
  search_terms    tsvector NOT NULL,
  -- Untyped so the dimension follows the configured embedder; the HNSW index is built per dimension at start.
  embedding       vector,
  -- Which embedder made `embedding`; NULL while the memory waits for the backfill.
  embedder        text
);

-- A retried save never creates a second row.
CREATE UNIQUE INDEX memories_namespace_source_id_key ON memories (namespace, source_id) WHERE source_id IS NOT NULL;
CREATE UNIQUE INDEX memories_namespace_idempotency_key_key ON memories (namespace, idempotency_key) WHERE idempotency_key IS NOT NULL;

-- Listing newest first (keyset pagination), per namespace and per session.
CREATE INDEX memories_namespace_created_idx ON memories (namespace, created_at DESC, id DESC);
CREATE INDEX memories_namespace_session_created_idx ON memories (namespace, session_id, created_at DESC, id DESC);

CREATE INDEX memories_search_terms_idx ON memories USING gin (search_terms);
CREATE INDEX memories_tags_idx ON memories USING gin (tags);
CREATE INDEX memories_metadata_idx ON memories USING gin (metadata jsonb_path_ops);

-- The backfill finds memories still waiting for an embedding without scanning the table.
CREATE INDEX memories_unembedded_idx ON memories (created_at) WHERE embedding IS NULL;

-- Service-wide settings, such as which embedder the stored vectors came from.
CREATE TABLE sage_settings (
  key        text PRIMARY KEY,
  value      jsonb NOT NULL,
  updated_at timestamptz NOT NULL DEFAULT now()
);
