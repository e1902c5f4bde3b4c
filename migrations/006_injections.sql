-- What the hooks injected into the agent's context, and why: one row per UserPromptSubmit or SessionStart answered.
-- Kept within INJECTIONS_MAX_ROWS and INJECTIONS_MAX_AGE_DAYS (src/hooks/injection-log.ts prunes it).
CREATE TABLE injections (
  id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  created_at  timestamptz NOT NULL DEFAULT now(),
  namespace   text NOT NULL,
  session_id  text,
  event       text NOT NULL,
  -- The prompt as the hook received it (UserPromptSubmit); NULL for SessionStart.
  prompt      text,
  -- 'injected', or why nothing was: 'nothing_recalled', 'none_relevant', 'deadline', 'unavailable', 'save_only', 'no_history'.
  outcome     text NOT NULL,
  -- The memories considered, by id with their scores, whether each was injected and the rule that decided. No
  -- content: forgetting a memory leaves nothing of it here (the reader joins what is still stored).
  hits        jsonb NOT NULL DEFAULT '[]'::jsonb,
  -- The memory the prompt was saved as, so forgetting it forgets the prompt here too.
  prompt_memory_id uuid,
  took_ms     real
);

CREATE INDEX injections_namespace_created_idx ON injections (namespace, created_at DESC, id DESC);
CREATE INDEX injections_namespace_session_idx ON injections (namespace, session_id, created_at DESC);
CREATE INDEX injections_created_idx ON injections (created_at);
CREATE INDEX injections_prompt_memory_idx ON injections (prompt_memory_id) WHERE prompt_memory_id IS NOT NULL;

-- Saves and recalls per namespace and hour, for the overview of the last day; counted in process, added here in rounds.
CREATE TABLE namespace_activity (
  namespace text NOT NULL,
  hour      timestamptz NOT NULL,
  saves     integer NOT NULL DEFAULT 0,
  recalls   integer NOT NULL DEFAULT 0,
  last_at   timestamptz NOT NULL,
  PRIMARY KEY (namespace, hour)
);
