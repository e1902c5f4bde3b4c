import { envSchema } from 'env-schema'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { parseEnv } from 'node:util'
import { Type, type Static } from 'typebox'
import { userDataDir } from './user-data-dir.js'

/** The model each provider that takes one uses when EMBEDDING_MODEL is unset. */
export const DEFAULT_MODELS = { openai: 'text-embedding-3-small', local: 'Xenova/all-MiniLM-L6-v2' } as const

/** One schema gives both the validation of the environment and the `Config` type. */
export const ConfigSchema = Type.Object({
  HOST: Type.String({ default: '127.0.0.1', minLength: 1, description: 'Address to listen on' }),
  PORT: Type.Integer({ default: 8765, minimum: 0, maximum: 65535, description: 'Port to listen on' }),
  LOG_LEVEL: Type.Enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'], { default: 'info', description: 'pino log level' }),
  DATABASE_URL: Type.Optional(Type.String({ minLength: 1, description: 'Postgres URL; unset means the embedded PGlite store under SAGE_DATA_DIR' })),
  DB_POOL_MAX: Type.Integer({ default: 10, minimum: 1, maximum: 500, description: 'Postgres pool size' }),
  DB_STATEMENT_TIMEOUT_MS: Type.Integer({ default: 30000, minimum: 100, description: 'Postgres statement_timeout for every pooled connection (at most DB_QUERY_TIMEOUT_MS less 250 ms, so a slow but live database cancels first)' }),
  DB_QUERY_TIMEOUT_MS: Type.Optional(Type.Integer({ minimum: 500, description: 'How long Sage waits for any answer from Postgres (a query, a new connection: at most 5 s) before it answers 503; default REQUEST_TIMEOUT_MS less 500 ms, so a frozen database is a 503 within the request timeout' })),
  SAGE_DATA_DIR: Type.Optional(Type.String({ minLength: 1, description: 'Where the embedded store (and the model cache, and the hook saves waiting for the database) keeps its files, locked by one process at a time; unset means the user\'s data folder: $XDG_DATA_HOME/sage-memory, else ~/.local/share/sage-memory (macOS: ~/Library/Application Support/sage-memory)' })),
  EMBEDDING_PROVIDER: Type.Optional(Type.Enum(['lexical', 'openai', 'local'], {
    description: 'lexical (built in, offline), openai (any OpenAI-compatible /v1/embeddings) or local (a sentence-embedding model run in process); defaults to openai when EMBEDDING_URL is set'
  })),
  EMBEDDING_URL: Type.Optional(Type.String({ minLength: 1, description: 'Base URL of an OpenAI-compatible embeddings endpoint' })),
  EMBEDDING_MODEL: Type.Optional(Type.String({ minLength: 1, description: `openai: model name sent to the endpoint (default ${DEFAULT_MODELS.openai}); local: a model id on the hub or a folder (/… or ./…) holding one (default ${DEFAULT_MODELS.local})` })),
  EMBEDDING_API_KEY: Type.Optional(Type.String({ description: 'Bearer key for the endpoint' })),
  EMBEDDING_DIMENSIONS: Type.Optional(Type.Integer({ minimum: 2, maximum: 16000, description: 'Vector length (lexical default 384; required for openai; local: the model\'s, checked when set)' })),
  EMBEDDING_SEND_DIMENSIONS: Type.Boolean({ default: false, description: 'Send "dimensions" in requests (OpenAI text-embedding-3 models)' }),
  EMBEDDING_TIMEOUT_MS: Type.Integer({ default: 10000, minimum: 50, description: 'Per-request timeout of the embeddings endpoint' }),
  EMBEDDING_BATCH_SIZE: Type.Integer({ default: 64, minimum: 1, maximum: 2048, description: 'Texts per embeddings request' }),
  EMBEDDING_MAX_RETRIES: Type.Integer({ default: 3, minimum: 0, maximum: 10, description: 'Retries of a failed embeddings request' }),
  EMBEDDING_SAVE_TIMEOUT_MS: Type.Integer({ default: 2000, minimum: 10, description: 'How long a save waits for its embedding before storing the text alone (embedded later)' }),
  BACKFILL_INTERVAL_MS: Type.Integer({ default: 5000, minimum: 100, description: 'How often memories saved without an embedding are embedded' }),
  BACKFILL_BATCH_SIZE: Type.Integer({ default: 256, minimum: 1, maximum: 5000, description: 'Memories embedded per backfill round' }),
  VECTOR_INDEX_BATCH_SIZE: Type.Integer({ default: 200, minimum: 1, maximum: 10000, description: 'Vectors the background indexer moves into the HNSW graph per transaction (PGlite: at most 16)' }),
  RECALL_EXACT_MAX_MEMORIES: Type.Integer({ default: 8000, minimum: 0, maximum: 100000, description: 'When at most this many memories match a recall (its namespace, or the part its filters let through), their vectors are compared exactly, not through the shared HNSW graph (0: never)' }),
  VECTOR_INDEXER: Type.Boolean({ default: true, description: 'Run the background vector indexer in this replica; turn it off on replicas that should only serve (one replica must index)' }),
  VECTOR_INDEX_YIELD_MS: Type.Integer({ default: 100, minimum: 0, maximum: 60000, description: 'While saves keep arriving, the vector indexer waits for a pause this long before its next batch (0: never waits)' }),
  VECTOR_INDEX_MAX_DEFERRED: Type.Integer({ default: 2000, minimum: 0, description: 'The indexer stops waiting once this many vectors saved here wait (recall searches them exactly), unless saves outpace it (then for at most 30 s)' }),
  VECTOR_INDEX_INTERVAL_MS: Type.Integer({ default: 1000, minimum: 10, description: 'How often the vector indexer looks for vectors saved by other replicas' }),
  BODY_LIMIT_BYTES: Type.Integer({ default: 1048576, minimum: 1024, description: 'Largest request body, except batches' }),
  BATCH_BODY_LIMIT_BYTES: Type.Integer({ default: 10485760, minimum: 1024, description: 'Largest body of POST /v1/memories/batch' }),
  REQUEST_TIMEOUT_MS: Type.Integer({ default: 30000, minimum: 1000, description: 'Longest a request may take before the socket is closed' }),
  SHUTDOWN_GRACE_MS: Type.Integer({ default: 10000, minimum: 100, description: 'How long shutdown waits for in-flight requests' }),
  SAGE_REDACT_SECRETS: Type.Boolean({ default: true, description: 'Replace credentials in saved text with [REDACTED:kind] markers' }),

  // A local embedding model, run in process by ONNX Runtime (EMBEDDING_PROVIDER=local).
  EMBEDDING_LOCAL_CACHE_DIR: Type.Optional(Type.String({ minLength: 1, description: 'Where downloaded models are kept; unset means SAGE_DATA_DIR/models' })),
  EMBEDDING_LOCAL_DOWNLOAD: Type.Boolean({ default: false, description: 'Let the start download EMBEDDING_MODEL when it is not in the model cache; otherwise only `sage-memory models pull` downloads' }),
  EMBEDDING_LOCAL_HUB_URL: Type.String({ default: 'https://huggingface.co', minLength: 1, description: 'The model hub (or a mirror of it) models are downloaded from' }),
  EMBEDDING_LOCAL_DTYPE: Type.Enum(['fp32', 'fp16', 'q8', 'int8', 'uint8', 'q4'], { default: 'fp32', description: 'Which weights of the model to load: fp32 is onnx/model.onnx, q8 onnx/model_quantized.onnx (smaller and faster, slightly less exact)' }),
  EMBEDDING_LOCAL_POOLING: Type.Enum(['mean', 'cls'], { default: 'mean', description: 'How token vectors become one, as the model card says: mean (sentence-transformers models such as all-MiniLM-L6-v2) or cls (BGE models)' }),
  EMBEDDING_LOCAL_THREADS: Type.Integer({ default: 1, minimum: 1, maximum: 64, description: 'CPU threads the model may use; the other cores stay free for requests' }),
  EMBEDDING_LOCAL_BATCH_SIZE: Type.Integer({ default: 8, minimum: 1, maximum: 1024, description: 'Texts per model run; a recall waits for at most one run of a batch being embedded' }),

  // Recall ranking (README, "How recall works").
  RECALL_VECTOR_WEIGHT: Type.Optional(Type.Number({ minimum: 0, maximum: 1, description: 'The vector side\'s share of a hybrid score; default by embedder: 0.03 for the built-in lexical one, 0.3 for a semantic model (measure yours with npm run bench:recall)' })),

  // Redis: durable asynchronous saves, shared caches and rate limits (issue: Redis).
  REDIS_URL: Type.Optional(Type.String({ minLength: 1, description: 'Redis URL; unset means synchronous saves and in-process caches and limits' })),
  REDIS_KEY_PREFIX: Type.String({ default: 'sage:', description: 'Prefix of every Redis key Sage writes' }),
  REDIS_COMMAND_TIMEOUT_MS: Type.Integer({ default: 2000, minimum: 50, description: 'Longest a Redis command may take' }),
  QUEUE_BATCH_SIZE: Type.Integer({ default: 500, minimum: 1, maximum: 10000, description: 'Queued saves a consumer writes per transaction' }),
  QUEUE_CLAIM_IDLE_MS: Type.Integer({ default: 30000, minimum: 1000, description: 'Pending entries idle this long are claimed from a dead consumer' }),
  QUEUE_MAX_ATTEMPTS: Type.Integer({ default: 5, minimum: 1, maximum: 100, description: 'Tries before a queued save moves to the dead-letter stream' }),
  CACHE_TTL_SECONDS: Type.Integer({ default: 300, minimum: 1, description: 'Time to live of cached recalls' }),
  EMBEDDING_CACHE_TTL_SECONDS: Type.Integer({ default: 86400, minimum: 1, description: 'Time to live of cached embeddings' }),
  RATE_LIMIT_MAX: Type.Integer({ default: 600, minimum: 0, description: 'Requests per window per key (or per address when open), and failed authentications per window per address; 0 turns the limiter off' }),
  RATE_LIMIT_WINDOW_MS: Type.Integer({ default: 60000, minimum: 1000, description: 'Rate limit window' }),

  // Hooks (issue: Claude Code hooks).
  HOOK_DEADLINE_MS: Type.Integer({ default: 250, minimum: 10, maximum: 30000, description: 'Every hook answer comes within this' }),
  HOOK_TOKEN_BUDGET: Type.Integer({ default: 1500, minimum: 50, maximum: 20000, description: 'Tokens of context a hook injects at most' }),
  HOOK_BODY_LIMIT_BYTES: Type.Integer({ default: 2097152, minimum: 1024, description: 'Largest body of POST /hooks/claude-code: room for a prompt many times the 100,000 characters a memory keeps (a longer prompt is cut to them, with a marker); a larger body is answered {} and saves nothing' }),
  HOOK_NAMESPACE_MAP: Type.Optional(Type.String({ description: 'cwd prefix to namespace mappings, e.g. "/src/billing=billing,/src/web=web"' })),

  // What the page at /ui shows: the trace of each injection, kept within these bounds.
  INJECTIONS_MAX_ROWS: Type.Integer({ default: 10000, minimum: 0, maximum: 10000000, description: 'Injection traces kept (GET /v1/injections, the page\'s Injections), newest first; 0 records none' }),
  INJECTIONS_MAX_AGE_DAYS: Type.Integer({ default: 30, minimum: 1, maximum: 3650, description: 'Injection traces older than this many days are deleted' }),

  // Access (issue: keys and scopes).
  SAGE_API_KEYS: Type.Optional(Type.String({ description: 'Keys and their namespace scopes: entries name:secret=scope[,scope][:delete] separated by ";" (secret 16+ chars), e.g. "ci:<secret>=team-a/*;admin:<secret>=*:delete"; see the README' })),
  SAGE_API_KEYS_FILE: Type.Optional(Type.String({ minLength: 1, description: 'File with the same entries, one a line (# comments); re-read on SIGHUP, keeping the last good keys if it is invalid' })),
  SAGE_ALLOW_OPEN: Type.Boolean({ default: false, description: 'Serve a non-loopback address with no keys (say so only behind your own auth)' }),
  METRICS_TOKEN: Type.Optional(Type.String({ minLength: 1, description: 'Bearer token /metrics requires when set' })),
  METRICS_PORT: Type.Optional(Type.Integer({ minimum: 1, maximum: 65535, description: 'Serve /metrics on this port (same host) instead of the main one, where it then answers 404' })),

  // Running the service day to day: its environment file, re-read on SIGHUP, and how it logs.
  SAGE_ENV_FILE: Type.Optional(Type.String({ minLength: 1, description: 'Environment file (KEY=value lines) read at start and re-read on SIGHUP; variables set in the process environment win over it' })),
  LOG_FORMAT: Type.Enum(['auto', 'json', 'pretty'], { default: 'auto', description: 'auto: human-readable on a terminal, JSON lines otherwise' }),

  // MCP (issue: MCP).
  MCP_ALLOWED_HOSTS: Type.Optional(Type.String({ description: 'Host names /mcp accepts in the Host header besides localhost, 127.0.0.1 and [::1], comma-separated (a proxy\'s name); on a non-loopback HOST, the only ones it accepts' })),
  MCP_ALLOWED_ORIGINS: Type.Optional(Type.String({ description: 'Origin host names /mcp accepts from browsers besides localhost, 127.0.0.1 and [::1], comma-separated' }))
})

/**
 * What SIGHUP changes in a running service (src/plugins/app/config-reload.ts); every other variable is read once
 * at start, and a change to it is logged as needing a restart.
 */
export const LIVE_SETTINGS = [
  'LOG_LEVEL',
  'RATE_LIMIT_MAX',
  'RATE_LIMIT_WINDOW_MS',
  'HOOK_DEADLINE_MS',
  'HOOK_TOKEN_BUDGET',
  'SAGE_API_KEYS',
  'SAGE_API_KEYS_FILE'
] as const satisfies ReadonlyArray<keyof Config>

export type Config = Static<typeof ConfigSchema>

/** Reads and validates the environment (with SAGE_ENV_FILE's variables under it); a bad value throws a message naming the variable. */
export function loadConfig(env: Record<string, string | undefined> = process.env): Config {
  const config = envSchema<Config>({ schema: ConfigSchema, data: withEnvironmentFile(env), dotenv: false })
  return checkConfig(config)
}

/** `env` over the variables of the file SAGE_ENV_FILE names (util.parseEnv's KEY=value syntax), when it names one. */
export function withEnvironmentFile(env: Record<string, string | undefined>): Record<string, string | undefined> {
  const file = env.SAGE_ENV_FILE
  if (!file) return env
  let text: string
  try {
    text = readFileSync(file, 'utf8')
  } catch (error) {
    throw new Error(`SAGE_ENV_FILE ${file} cannot be read: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`, { cause: error })
  }
  return { ...parseEnv(text), ...env }
}

/** Rules that span several variables, which a per-variable schema cannot say. */
export function checkConfig(config: Config): Config {
  const provider = embeddingProvider(config)
  if (provider === 'openai') {
    if (!config.EMBEDDING_URL) throw new Error('EMBEDDING_PROVIDER=openai needs EMBEDDING_URL (for example http://127.0.0.1:11434 for Ollama)')
    if (!config.EMBEDDING_DIMENSIONS) throw new Error('EMBEDDING_URL is set, so EMBEDDING_DIMENSIONS must say the length of the model\'s vectors (for example 768 for nomic-embed-text)')
  }
  return config
}

export function embeddingProvider(config: Config): 'lexical' | 'openai' | 'local' {
  return config.EMBEDDING_PROVIDER ?? (config.EMBEDDING_URL ? 'openai' : 'lexical')
}

/** The model the configured provider uses: EMBEDDING_MODEL, or that provider's default. */
export function embeddingModel(config: Config, provider: 'openai' | 'local'): string {
  return config.EMBEDDING_MODEL ?? DEFAULT_MODELS[provider]
}

/** Where the embedded store and the hook spool keep their files: SAGE_DATA_DIR, or the user's data folder whatever the working directory. */
export function dataDir(config: Pick<Config, 'SAGE_DATA_DIR'>): string {
  return config.SAGE_DATA_DIR ?? userDataDir()
}

/** Where downloaded models are kept. */
export function modelCacheDir(config: Config): string {
  return config.EMBEDDING_LOCAL_CACHE_DIR ?? join(dataDir(config), 'models')
}

/** How long Sage waits on Postgres: the client's own timeouts, within the request timeout unless set otherwise. */
export function databaseTimeouts(config: Pick<Config, 'REQUEST_TIMEOUT_MS' | 'DB_STATEMENT_TIMEOUT_MS' | 'DB_QUERY_TIMEOUT_MS'>) {
  const queryTimeoutMs = config.DB_QUERY_TIMEOUT_MS ?? Math.max(500, config.REQUEST_TIMEOUT_MS - 500)
  return {
    queryTimeoutMs,
    statementTimeoutMs: Math.max(100, Math.min(config.DB_STATEMENT_TIMEOUT_MS, queryTimeoutMs - 250)),
    connectionTimeoutMs: Math.min(5_000, queryTimeoutMs)
  }
}

/** Defaults alone, plus overrides: what tests and tools build a config from. */
export function configWith(overrides: Partial<Config> = {}): Config {
  return checkConfig({ ...loadConfig({}), ...overrides })
}
