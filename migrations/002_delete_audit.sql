-- Who deleted what: one row per delete call, written in the transaction of the delete itself.
CREATE TABLE delete_audit (
  id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  deleted_at    timestamptz NOT NULL DEFAULT now(),
  -- The API key's name; NULL when the service ran without keys (open) or the delete came from a command.
  key_name      text,
  -- The key's namespace patterns at the time, e.g. {team-a/*}.
  key_scopes    text[] NOT NULL DEFAULT '{}',
  namespace     text NOT NULL,
  -- What was asked for: one memory by id, one session of the namespace, or (both NULL) the whole namespace.
  memory_id     uuid,
  session_id    text,
  deleted_count integer NOT NULL
);

CREATE INDEX delete_audit_deleted_at_idx ON delete_audit (deleted_at);
CREATE INDEX delete_audit_namespace_idx ON delete_audit (namespace, deleted_at);
