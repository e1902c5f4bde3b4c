import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import type { FastifyBaseLogger, FastifyRequest } from 'fastify'
import { join } from 'node:path'
import { Type } from 'typebox'
import { dataDir } from '../../src/config.js'
import { createClaudeCodeHook, type HookDryRun } from '../../src/hooks/claude-code-hook.js'
import { createHookNamespace } from '../../src/hooks/hook-namespace.js'
import { DryRunInjection } from '../../src/hooks/injection-schemas.js'
import { createProjectMode, PROJECT_MODES } from '../../src/hooks/project-mode.js'

const HookAnswer = Type.Object(
  {
    hookSpecificOutput: Type.Optional(
      Type.Object({
        hookEventName: Type.String({ description: 'UserPromptSubmit or SessionStart' }),
        additionalContext: Type.String({ description: 'Dated facts from earlier sessions, within HOOK_TOKEN_BUDGET tokens' })
      })
    ),
    dry_run: Type.Optional(
      Type.Object({
        namespace: Type.Union([Type.String(), Type.Null()]),
        project_mode: Type.Enum(PROJECT_MODES),
        would_save: Type.Boolean(),
        injection: Type.Union([DryRunInjection, Type.Null()])
      }, { description: 'With ?dry_run=true only: what the call would have saved and injected, and why (nothing was saved)' })
    )
  },
  { description: 'What Claude Code reads back: context to inject, or {} for nothing' }
)

/** Status codes of the access layer that the hook passes on as they are; every other failure is a `200 {}`. */
const PASSED_THROUGH = new Set([401, 429])

/**
 * POST /hooks/claude-code: Claude Code's hook JSON, from an `http` hook or piped through curl by a `command`
 * hook, always answered 200 with a JSON object within HOOK_DEADLINE_MS (see src/hooks/claude-code-hook.ts).
 */
const claudeCode: FastifyPluginAsyncTypebox = async (fastify) => {
  const { config } = fastify
  const hook = createClaudeCodeHook({
    memories: fastify.memories,
    namespaceOf: createHookNamespace(config.HOOK_NAMESPACE_MAP),
    log: fastify.log,
    // Read at each call: a reload (SIGHUP) changes them without a restart.
    get deadlineMs() {
      return config.HOOK_DEADLINE_MS
    },
    get tokenBudget() {
      return config.HOOK_TOKEN_BUDGET
    },
    embedderKind: fastify.embedder.kind,
    registry: fastify.metrics.registry,
    injections: fastify.injections,
    projectMode: createProjectMode(),
    // ':memory:' keeps nothing on disk, so neither does the hook.
    spoolDir: config.SAGE_DATA_DIR === ':memory:' ? undefined : join(dataDir(config), 'hook-spool')
  })
  // Before the first request: what the last shutdown spooled goes back into the retry buffer.
  await hook.replay()
  // The first prompt after a start must not pay for the hook's first run: a dry run saves and traces nothing.
  fastify.warmUp.add('hook', (namespace, question) =>
    hook.handle({ hook_event_name: 'UserPromptSubmit', session_id: 'sage-warm-up', prompt: `${question} (again)` }, { namespace, dryRun: true }))
  // Before the store closes: one last attempt at the saves still waiting.
  fastify.addHook('onClose', () => hook.close(Math.min(2_000, fastify.config.SHUTDOWN_GRACE_MS)))

  // curl's --data-binary sends application/x-www-form-urlencoded unless told otherwise: any body is read as JSON here.
  fastify.removeAllContentTypeParsers()
  fastify.addContentTypeParser('*', { parseAs: 'string' }, (request, body, done) => {
    done(null, parseLenient(body as string, request.log))
  })

  // A hook never blocks the agent: whatever fails here (body too large, a fault) is an empty answer, logged.
  fastify.setErrorHandler((error, request, reply) => {
    const status = (error as { statusCode?: number }).statusCode ?? 500
    if (PASSED_THROUGH.has(status)) return reply.send(error)
    request.log.warn({ err: error }, 'hook request failed; answered {}')
    return reply.code(200).send({})
  })

  fastify.post('/claude-code', {
    bodyLimit: fastify.config.HOOK_BODY_LIMIT_BYTES,
    schema: {
      tags: ['hooks'],
      summary: 'Claude Code hook: save the turn, answer with relevant memories',
      description:
        'Takes the JSON Claude Code gives a hook, with any content type. UserPromptSubmit saves the prompt and answers ' +
        'additionalContext from earlier sessions; Stop/SubagentStop save last_assistant_message; PostCompact saves ' +
        'compact_summary as a note tagged summary; SessionStart answers a digest of recent sessions; anything else is {}. ' +
        'Always 200 with a JSON object within HOOK_DEADLINE_MS, also when the database is down (saves are retried).',
      querystring: Type.Object({
        namespace: Type.Optional(Type.String({ description: 'Use this namespace instead of the one derived from cwd' })),
        dry_run: Type.Optional(Type.Boolean({ description: 'Save nothing, trace nothing, and answer what would have been saved and injected (sage-memory doctor --prompt)' }))
      }),
      response: { 200: HookAnswer }
    }
  }, async (request, reply) => {
    let dryRun: HookDryRun | undefined
    const answer = await hook.handle(request.body, {
      namespace: request.query.namespace,
      authorize: (namespace) => mayUseNamespace(request, namespace),
      elapsedMs: reply.elapsedTime,
      log: request.log,
      dryRun: request.query.dry_run === true,
      onDryRun: (result) => (dryRun = result)
    })
    return request.query.dry_run === true ? { ...answer, dry_run: dryRun } : answer
  })
}

/**
 * The one place the hook asks whether the caller's key covers `namespace` (derived from cwd, or ?namespace=).
 * routes/hooks/autohooks.ts has already answered 401 to a request without a valid key.
 */
function mayUseNamespace(request: FastifyRequest, namespace: string): boolean {
  return request.access.allows(namespace)
}

/** A malformed or empty body is `{}` (answered `{}` by the hook), never a 400. */
function parseLenient(body: string, log: FastifyBaseLogger): unknown {
  if (body.trim() === '') return {}
  try {
    return JSON.parse(body.replace(/^\uFEFF/, ''))
  } catch (error) {
    log.warn({ err: error, bytes: body.length }, 'hook body is not JSON; answered {}')
    return {}
  }
}

export default claudeCode
