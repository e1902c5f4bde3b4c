import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { existsSync } from 'node:fs'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { after, before, describe, test } from 'node:test'
import { promisify } from 'node:util'
import type { FastifyInstance } from 'fastify'
import { parse } from 'yaml'
import { backends, buildTestApp, REPO_ROOT, testRedisUrl, type TestStore } from '../helper.js'
import { dropKeys, testKeyPrefix } from '../support/redis.js'

const run = promisify(execFile)
const DEPLOY = join(REPO_ROOT, 'deploy')
const promtool = ['/usr/bin/promtool', '/usr/local/bin/promtool'].find((path) => existsSync(path))
const redisUrl = testRedisUrl()
const skipPromtool = promtool ? false : process.env.CI === 'true' ? false : 'promtool is not installed (Debian package prometheus)'

interface Rule { alert: string; expr: string }
interface Panel { type: string; id: number; title: string; targets?: Array<{ expr: string }>; datasource?: unknown }

const alertRules = async (): Promise<Rule[]> =>
  (parse(await readFile(join(DEPLOY, 'prometheus/alerts.yml'), 'utf8')) as { groups: Array<{ rules: Rule[] }> }).groups.flatMap((g) => g.rules)
const dashboard = async () => JSON.parse(await readFile(join(DEPLOY, 'grafana/sage-dashboard.json'), 'utf8')) as { uid: string; panels: Panel[] }

const NOT_METRICS = new Set(['and', 'or', 'unless', 'bool', 'offset', 'inf', 'nan'])

/** The metric names a PromQL expression reads: what is left once strings, selectors, ranges, groupings and functions are gone. */
export function metricNames(expr: string): string[] {
  const bare = expr
    .replace(/"(?:[^"\\]|\\.)*"/g, '""')
    .replace(/\{[^}]*\}/g, ' ')
    .replace(/\[[^\]]*\]/g, ' ')
    .replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, ' ')
    .replace(/\$\w+/g, ' ')
  const names = new Set<string>()
  for (const match of bare.matchAll(/[a-zA-Z_:][a-zA-Z0-9_:]*/g)) {
    const before = bare[match.index - 1] ?? ' '
    if (/[0-9.]/.test(before)) continue
    if (bare.slice(match.index + match[0].length).trimStart().startsWith('(')) continue
    if (NOT_METRICS.has(match[0].toLowerCase())) continue
    names.add(match[0])
  }
  return [...names]
}

/** Every series name a Prometheus exposition can hold, from its TYPE lines (a histogram's _bucket, _sum and _count). */
function exportedNames(exposition: string): Set<string> {
  const names = new Set<string>()
  for (const [, name, type] of exposition.matchAll(/^# TYPE (\S+) (\S+)$/gm)) {
    names.add(name!)
    if (type === 'histogram') for (const suffix of ['_bucket', '_sum', '_count']) names.add(`${name}${suffix}`)
    if (type === 'summary') for (const suffix of ['_sum', '_count']) names.add(`${name}${suffix}`)
  }
  return names
}

describe('alert rules', { skip: skipPromtool }, () => {
  test('promtool checks the rules and the Prometheus configuration, and their unit tests pass', async () => {
    if (!promtool) throw new Error('promtool is missing: .ci/run installs Debian\'s prometheus package')
    await run(promtool, ['check', 'rules', join(DEPLOY, 'prometheus/alerts.yml')])
    await run(promtool, ['check', 'config', join(DEPLOY, 'prometheus/prometheus.yml')])
    const { stdout } = await run(promtool, ['test', 'rules', join(DEPLOY, 'prometheus/alerts.test.yml')]).catch((error: { stdout: string; stderr: string }) => {
      throw new Error(`promtool test rules failed:\n${error.stdout}${error.stderr}`)
    })
    assert.match(stdout, /SUCCESS/)
  })
})

test('every alert has a unit test, and the issue\'s alerts are all there', async () => {
  const rules = await alertRules()
  const tests = await readFile(join(DEPLOY, 'prometheus/alerts.test.yml'), 'utf8')
  for (const rule of rules) assert.match(tests, new RegExp(`alertname: ${rule.alert}\\n`), `no test of ${rule.alert}`)
  assert.deepEqual(rules.map((r) => r.alert).sort(), [
    'SageAbsent', 'SageDeadLetters', 'SageDependencyDown', 'SageDown', 'SageHighErrorRatio',
    'SageHookDeadlineMisses', 'SageQueueLagging', 'SageRecallSlow', 'SageVectorBacklogGrowing'
  ])
})

test('metricNames finds the metrics of an expression and nothing else', () => {
  assert.deepEqual(
    metricNames('histogram_quantile(0.99, sum by (job, le) (rate(sage_recall_duration_seconds_bucket{job="sage", mode=~"a|b"}[$__rate_interval]))) > 0.25'),
    ['sage_recall_duration_seconds_bucket']
  )
  assert.deepEqual(metricNames('process_resident_memory_bytes{job="sage"} / 1e9 and up offset 5m'), ['process_resident_memory_bytes', 'up'])
})

describe('the dashboard and the rules name only metrics the service exports', () => {
  let store: TestStore
  let app: FastifyInstance
  const prefix = testKeyPrefix('monitoring')
  before(async () => {
    // Postgres when there is one (the pool gauge), and Redis (the queue's gauges): the service as deployed.
    store = await backends().at(-1)!.create()
    app = await buildTestApp(store.db, redisUrl ? { REDIS_URL: redisUrl, REDIS_KEY_PREFIX: prefix } : {})
    await app.listen({ host: '127.0.0.1', port: 0 })
  })
  after(async () => {
    await app?.close()
    await store?.drop()
    if (redisUrl) await dropKeys(redisUrl, prefix)
  })

  test('each metric of each panel and each rule is in the live /metrics, event-loop delay included', async () => {
    const address = app.server.address() as { port: number }
    const exposition = await (await fetch(`http://127.0.0.1:${address.port}/metrics`)).text()
    const exported = exportedNames(exposition)
    // prom-client's default metrics: its event-loop monitor is registered.
    for (const name of ['nodejs_eventloop_lag_p99_seconds', 'nodejs_eventloop_lag_mean_seconds', 'process_cpu_seconds_total']) assert.ok(exported.has(name), name)

    const { uid, panels } = await dashboard()
    assert.equal(uid, 'sage-memory')
    assert.equal(new Set(panels.map((p) => p.id)).size, panels.length, 'panel ids are unique')
    const named = new Map<string, string>()
    for (const panel of panels.filter((p) => p.type !== 'row')) {
      assert.ok(panel.targets && panel.targets.length > 0, `${panel.title} has no query`)
      for (const { expr } of panel.targets) for (const name of metricNames(expr)) named.set(name, `panel "${panel.title}"`)
    }
    for (const rule of await alertRules()) for (const name of metricNames(rule.expr)) named.set(name, `alert ${rule.alert}`)
    // `up` is Prometheus's own, for every target.
    named.delete('up')
    // Without Redis the queue's gauges are not registered: only then are they left out.
    const queueGauges = redisUrl ? [] : [...named.keys()].filter((name) => name.startsWith('sage_queue_') && name !== 'sage_queue_lag_seconds_bucket')
    for (const [name, where] of named) {
      if (queueGauges.includes(name)) continue
      assert.ok(exported.has(name), `${where} reads ${name}, which /metrics does not export`)
    }
    for (const wanted of ['http_request_duration_seconds_bucket', 'sage_recall_duration_seconds_bucket', 'sage_hook_requests_total', 'sage_queue_depth',
      'sage_queue_lag_seconds_bucket', 'sage_queue_dead_letters', 'sage_vector_backlog', 'sage_embedding_duration_seconds_count', 'sage_db_pool_connections',
      'nodejs_eventloop_lag_p99_seconds']) {
      assert.ok(named.has(wanted), `the dashboard or the rules should show ${wanted}`)
    }
  })
})
