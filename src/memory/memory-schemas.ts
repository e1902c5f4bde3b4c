import { Type, type Static } from 'typebox'

/** The HTTP API's shapes, once: validation, types, serialisation and OpenAPI all come from here. */

export const ROLES = ['user', 'assistant', 'system', 'tool', 'note'] as const
export type Role = (typeof ROLES)[number]

export const LIMITS = {
  contentChars: 100_000,
  metadataBytes: 16 * 1024,
  metadataDepth: 8,
  tags: 32,
  tagChars: 64,
  batchItems: 1_000,
  queryChars: 8_000,
  k: 50,
  listLimit: 500,
  tokenBudget: 100_000
} as const

/** What a request that leaves these out gets: the schemas' defaults, and the code's for callers that skip the schemas. */
export const DEFAULTS = {
  k: 8,
  tokenBudget: 1500,
  listLimit: 50,
  sessionsLimit: 100
} as const

/** What a namespace may hold, once: the HTTP schema, the hooks' namespaces, the commands and API key scopes all check this. */
export const NAMESPACE_CHARS = 'A-Za-z0-9._:/@-'
export const NAMESPACE_MAX_LENGTH = 128
export const NAMESPACE_PATTERN = new RegExp(`^[${NAMESPACE_CHARS}]{1,${NAMESPACE_MAX_LENGTH}}$`)
/** The rule in words, for error messages: "must be …". */
export const NAMESPACE_RULE = `1-${NAMESPACE_MAX_LENGTH} characters of [${NAMESPACE_CHARS}]`

export const Namespace = Type.String({
  minLength: 1,
  maxLength: NAMESPACE_MAX_LENGTH,
  pattern: `^[${NAMESPACE_CHARS}]+$`,
  description: `Isolation unit: a project, a team, a user. 1-${NAMESPACE_MAX_LENGTH} of [${NAMESPACE_CHARS}]`,
  examples: ['my-project']
})
export const SessionId = Type.String({ minLength: 1, maxLength: 256, description: 'The agent session this belongs to' })
export const RoleSchema = Type.Enum(ROLES, { description: 'Who said it' })
// Not Type.Record(Type.String(), …): its key pattern ^.*$ misses keys holding a line break, which the response serializer then drops.
export const Metadata = Type.Unsafe<Record<string, unknown>>({
  type: 'object',
  additionalProperties: true,
  description: 'Any JSON object, at most 16 KiB serialized; recall filters by containment'
})
export const Tags = Type.Array(Type.String({ minLength: 1, maxLength: LIMITS.tagChars }), { maxItems: LIMITS.tags })
export const SourceId = Type.String({ minLength: 1, maxLength: 256, description: "Caller's own id (transcript line uuid, message id); unique per namespace" })
export const Timestamp = Type.String({ format: 'date-time' })
export const MemoryId = Type.String({ format: 'uuid' })

export const MemoryInput = Type.Object(
  {
    namespace: Type.Optional(Namespace),
    session_id: Type.Optional(Type.Union([SessionId, Type.Null()])),
    role: Type.Optional(RoleSchema),
    content: Type.String({ minLength: 1, maxLength: LIMITS.contentChars }),
    metadata: Type.Optional(Metadata),
    tags: Type.Optional(Tags),
    source_id: Type.Optional(Type.Union([SourceId, Type.Null()])),
    created_at: Type.Optional(Type.String({ format: 'date-time', description: 'When it happened (imports keep the original time); default now' }))
  },
  { additionalProperties: false }
)
export type MemoryInput = Static<typeof MemoryInput>

export const Memory = Type.Object({
  id: MemoryId,
  namespace: Type.String(),
  session_id: Type.Union([Type.String(), Type.Null()]),
  role: RoleSchema,
  content: Type.String(),
  metadata: Metadata,
  tags: Type.Array(Type.String()),
  source_id: Type.Union([Type.String(), Type.Null()]),
  created_at: Timestamp
})
export type Memory = Static<typeof Memory>

export const SaveResult = Type.Object({ id: MemoryId, created: Type.Boolean() })
export type SaveResult = Static<typeof SaveResult>

export const BatchBody = Type.Object(
  { items: Type.Array(MemoryInput, { minItems: 1, maxItems: LIMITS.batchItems }) },
  { additionalProperties: false }
)
export const BatchResult = Type.Object({ items: Type.Array(SaveResult) })

export const TurnBody = Type.Object(
  {
    user_input: Type.String({ minLength: 1, maxLength: LIMITS.contentChars }),
    assistant_response: Type.String({ minLength: 1, maxLength: LIMITS.contentChars }),
    session_id: Type.Optional(Type.Union([SessionId, Type.Null()])),
    namespace: Type.Optional(Namespace),
    metadata: Type.Optional(Metadata),
    tags: Type.Optional(Tags)
  },
  { additionalProperties: false }
)
export const TurnResult = Type.Object({ ids: Type.Array(MemoryId, { minItems: 2, maxItems: 2 }), created: Type.Boolean() })

export const RecallFilter = Type.Object(
  {
    role: Type.Optional(Type.Array(RoleSchema, { maxItems: ROLES.length })),
    tags: Type.Optional(Type.Array(Type.String({ minLength: 1, maxLength: LIMITS.tagChars }), { maxItems: LIMITS.tags, description: 'Memories carrying all of these tags' })),
    metadata: Type.Optional(Metadata),
    since: Type.Optional(Type.Union([Timestamp, Type.Null()])),
    until: Type.Optional(Type.Union([Timestamp, Type.Null()])),
    exclude_session_id: Type.Optional(Type.Union([SessionId, Type.Null()], { description: 'Leave out this session (what the agent already holds)' }))
  },
  { additionalProperties: false }
)
export type RecallFilter = Static<typeof RecallFilter>

export const RecallMode = Type.Enum(['hybrid', 'vector', 'text'])
export type RecallMode = Static<typeof RecallMode>

export const RecallBody = Type.Object(
  {
    query: Type.String({ minLength: 1, maxLength: LIMITS.queryChars }),
    namespace: Type.Optional(Namespace),
    session_id: Type.Optional(Type.Union([SessionId, Type.Null()], { description: 'Only this session' })),
    k: Type.Optional(Type.Integer({ minimum: 1, maximum: LIMITS.k, default: DEFAULTS.k })),
    mode: Type.Optional(RecallMode),
    filter: Type.Optional(RecallFilter),
    min_score: Type.Optional(Type.Number({ minimum: 0, maximum: 1, default: 0 })),
    format: Type.Optional(Type.Enum(['json', 'context'])),
    token_budget: Type.Optional(Type.Integer({ minimum: 1, maximum: LIMITS.tokenBudget, default: DEFAULTS.tokenBudget }))
  },
  { additionalProperties: false }
)
export type RecallBody = Static<typeof RecallBody>

export const RecallHit = Type.Intersect([
  Memory,
  Type.Object({
    score: Type.Number({
      description: 'Relevance in [0, 1], best first: hybrid is a weighted sum of the text and vector scores (the vector side\'s weight set by the embedder), vector or text mode that score alone; in hybrid and text mode, times 0.7 for a memory that only asks a question, lifted for what was said right after a good hit in its session. Of near-copies only the newest is returned, with the best score among them; of versions of one fact the newest takes the best place'
    }),
    scores: Type.Object({
      vector: Type.Union([Type.Number(), Type.Null()], { description: 'Cosine similarity of the embeddings; null in text mode or before the memory is embedded' }),
      text: Type.Union([Type.Number(), Type.Null()], {
        description: 'BM25 over the namespace\'s own term statistics, divided by the best BM25 a memory of the namespace could get for the query (terms no memory holds left out), in [0, 1]: rare terms weigh more than common ones, long memories less than short ones; a memory of average length holding every query term scores 0.84; null in vector mode'
      })
    }),
    matched_terms: Type.Array(Type.String(), {
      description: 'The query terms this memory holds, as the tokenizer writes them (lowercase, English words stemmed, identifiers split into parts and joined, CJK text in character pairs)'
    })
  })
])
export type RecallHit = Static<typeof RecallHit>

export const RecallResult = Type.Object({
  results: Type.Array(RecallHit),
  took_ms: Type.Number(),
  context: Type.Optional(Type.String())
})

export const ListQuery = Type.Object(
  {
    namespace: Type.Optional(Namespace),
    session_id: Type.Optional(SessionId),
    role: Type.Optional(RoleSchema),
    limit: Type.Optional(Type.Integer({ minimum: 1, maximum: LIMITS.listLimit, default: DEFAULTS.listLimit })),
    cursor: Type.Optional(Type.String({ minLength: 1, maxLength: 512 }))
  },
  { additionalProperties: false }
)
export const ListResult = Type.Object({ items: Type.Array(Memory), next_cursor: Type.Union([Type.String(), Type.Null()]) })

export const DeleteManyQuery = Type.Object(
  { namespace: Namespace, session_id: Type.Optional(SessionId) },
  { additionalProperties: false }
)
export const DeleteManyResult = Type.Object({ deleted: Type.Integer() })

export const SessionsQuery = Type.Object(
  { namespace: Type.Optional(Namespace), limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000, default: DEFAULTS.sessionsLimit })) },
  { additionalProperties: false }
)
export const SessionSummary = Type.Object({
  session_id: Type.String(),
  count: Type.Integer(),
  first_at: Timestamp,
  last_at: Timestamp
})
export const SessionsResult = Type.Object({ items: Type.Array(SessionSummary) })

/** Idempotency-Key: a retried request with the same key (in the namespace) never creates a second row. */
export const IdempotencyHeaders = Type.Object({
  'idempotency-key': Type.Optional(Type.String({ minLength: 1, maxLength: 255, pattern: '^[\\x21-\\x7e]+$' }))
})

export const IdParams = Type.Object({ id: Type.String({ format: 'uuid' }) }, { additionalProperties: false })

export const ErrorBody = Type.Object({
  statusCode: Type.Integer(),
  error: Type.String(),
  code: Type.String(),
  message: Type.String()
})
