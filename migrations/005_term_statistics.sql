-- Per-namespace term statistics for BM25: in how many memories of a namespace each term occurs, and how many
-- memories and terms the namespace holds (for the average length). A save must stay cheap and concurrent saves must
-- not queue on the counters of common words, so a save only lists its memory in term_backlog (one small row, from a
-- statement trigger, whatever statement inserted it); a delete lists the terms of a memory already counted in
-- term_removals. A background fold (src/memory/term-statistics.ts) moves both into the counters, one transaction at
-- a time, and recall adds what still waits, so the figures it reads are exact at any moment.
CREATE TABLE term_frequencies (
  namespace text NOT NULL,
  term      text NOT NULL,
  memories  bigint NOT NULL,
  PRIMARY KEY (namespace, term)
);

CREATE TABLE namespace_statistics (
  namespace text PRIMARY KEY,
  memories  bigint NOT NULL,
  -- The distinct terms of all its memories added up: a memory's length is its number of distinct terms.
  terms     bigint NOT NULL
);

CREATE TABLE term_backlog (
  id uuid PRIMARY KEY
);

CREATE TABLE term_removals (
  id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  namespace    text NOT NULL,
  search_terms tsvector NOT NULL
);
CREATE INDEX term_removals_namespace_idx ON term_removals (namespace);

CREATE FUNCTION sage_list_saved_terms() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO term_backlog (id) SELECT id FROM saved;
  RETURN NULL;
END $$;

-- A memory deleted before the fold counted it leaves the backlog; one already counted is subtracted by the fold.
-- A fold holding the backlog entry makes this wait, then finds it gone and lists the removal: counted once, removed once.
CREATE FUNCTION sage_list_removed_terms() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  WITH unlisted AS (DELETE FROM term_backlog b USING gone g WHERE b.id = g.id RETURNING b.id)
  INSERT INTO term_removals (namespace, search_terms)
  SELECT g.namespace, g.search_terms FROM gone g WHERE g.id NOT IN (SELECT id FROM unlisted);
  RETURN NULL;
END $$;

CREATE TRIGGER memories_terms_saved AFTER INSERT ON memories
  REFERENCING NEW TABLE AS saved FOR EACH STATEMENT EXECUTE FUNCTION sage_list_saved_terms();
CREATE TRIGGER memories_terms_removed AFTER DELETE ON memories
  REFERENCING OLD TABLE AS gone FOR EACH STATEMENT EXECUTE FUNCTION sage_list_removed_terms();

-- Memories stored before this migration are counted by the first folds after it.
INSERT INTO term_backlog (id) SELECT id FROM memories;
