import assert from 'node:assert/strict'
import { existsSync } from 'node:fs'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { before, describe, test } from 'node:test'
import { parse } from 'yaml'
import { ConfigSchema } from '../../src/config.js'
import { REPO_ROOT } from '../helper.js'

/**
 * The compose file as Compose would read it. There is no Docker engine (nor Compose) here, so the file is parsed
 * and its variables interpolated the way Compose does (${VAR}, ${VAR:-default}, ${VAR:?error}), and what the
 * deployment promises is checked on the result.
 */
interface Service {
  image?: string
  build?: string
  profiles?: string[]
  ports?: string[]
  environment?: Record<string, string>
  env_file?: Array<{ path: string; required: boolean }>
  volumes?: string[]
  depends_on?: Record<string, { condition: string }> | string[]
  networks?: Record<string, { aliases?: string[] }>
}

function interpolate(text: string, env: Record<string, string>): string {
  return text.replace(/\$\{([A-Z0-9_]+)(?::([-?])([^}]*))?\}/g, (_, name: string, op?: string, arg?: string) => {
    const value = env[name]
    if (op === '-') return value ? value : arg!
    if (op === '?' && !value) throw new Error(`${name}: ${arg}`)
    return value ?? ''
  })
}

describe('docker-compose.yml', () => {
  let raw: string
  let envExample: string
  const load = (env: Record<string, string>) => (parse(interpolate(raw, env), { merge: true }) as { services: Record<string, Service> }).services
  before(async () => {
    raw = await readFile(join(REPO_ROOT, 'docker-compose.yml'), 'utf8')
    envExample = await readFile(join(REPO_ROOT, '.env.example'), 'utf8')
  })

  test('needs SAGE_API_KEYS, from .env, and publishes Sage on 127.0.0.1 unless told otherwise', () => {
    assert.throws(() => load({}), /SAGE_API_KEYS: set SAGE_API_KEYS in \.env/)
    const services = load({ SAGE_API_KEYS: 'me:0123456789abcdef0123=*' })
    assert.deepEqual(services.sage!.ports, ['127.0.0.1:8765:8765'])
    assert.deepEqual(services.sage!.env_file, [{ path: '.env', required: false }])
    assert.equal(services.sage!.environment!.SAGE_API_KEYS, 'me:0123456789abcdef0123=*')
    for (const [name, service] of Object.entries(services)) {
      for (const port of service.ports ?? []) assert.match(port, /^127\.0\.0\.1:/, `${name} publishes ${port} beyond this machine`)
    }
    assert.deepEqual(load({ SAGE_API_KEYS: 'k', SAGE_BIND_ADDRESS: '0.0.0.0', SAGE_PORT: '9000' }).sage!.ports, ['0.0.0.0:9000:8765'])
  })

  test('.env.example names every variable the file reads, and only those or Sage\'s own', () => {
    const used = new Set([...raw.matchAll(/\$\{([A-Z0-9_]+)/g)].map((m) => m[1]!))
    const listed = new Set([...envExample.matchAll(/^([A-Z0-9_]+)=/gm)].map((m) => m[1]!))
    for (const name of used) assert.ok(listed.has(name), `.env.example lacks ${name}`)
    const sage = new Set(Object.keys(ConfigSchema.properties))
    for (const name of listed) assert.ok(used.has(name) || sage.has(name), `.env.example sets ${name}, which nothing reads`)
  })

  test('the monitoring profile: Prometheus with the rules, Grafana with the dashboard, files that exist', () => {
    const services = load({ SAGE_API_KEYS: 'k' })
    assert.deepEqual(services.prometheus!.profiles, ['monitoring'])
    assert.deepEqual(services.grafana!.profiles, ['monitoring'])
    assert.match(services.prometheus!.image!, /^prom\/prometheus:v\d/)
    assert.match(services.grafana!.image!, /^grafana\/grafana:\d/)
    const mounts = Object.values(services).flatMap((service) => service.volumes ?? []).filter((volume) => volume.startsWith('./'))
    assert.ok(mounts.length >= 5)
    for (const mount of mounts) assert.ok(existsSync(join(REPO_ROOT, mount.split(':')[0]!)), `${mount} mounts a file that is not in the repository`)
    assert.ok(services.prometheus!.volumes!.some((v) => v.startsWith('./deploy/prometheus/alerts.yml:')))
    assert.ok(services.grafana!.volumes!.some((v) => v.startsWith('./deploy/grafana/sage-dashboard.json:')))
  })

  test('the scale profile: three replicas behind an official reverse proxy, exactly one running the vector indexer', async () => {
    const services = load({ SAGE_API_KEYS: 'k' })
    const replicas = Object.entries(services).filter(([, service]) => service.environment?.DATABASE_URL !== undefined)
    assert.deepEqual(replicas.map(([name]) => name), ['sage', 'sage-2', 'sage-3'])
    assert.deepEqual(replicas.map(([, s]) => s.environment!.VECTOR_INDEXER), ['true', 'false', 'false'])
    for (const [name, service] of replicas) {
      assert.equal(service.environment!.REDIS_URL, 'redis://redis:6379/0', `${name} shares the queue`)
      assert.deepEqual(service.networks!.default!.aliases, ['sage-replicas'], `${name} is found by Prometheus`)
      assert.deepEqual(Object.keys(service.depends_on as object).sort(), ['postgres', 'redis'])
    }
    assert.deepEqual(services['sage-2']!.profiles, ['scale'])
    assert.deepEqual(services.proxy!.profiles, ['scale'])
    assert.match(services.proxy!.image!, /^nginx:\d+\.\d+-alpine$/)
    const conf = await readFile(join(REPO_ROOT, 'deploy/nginx/sage.conf'), 'utf8')
    assert.deepEqual([...conf.matchAll(/^\s*server (\S+?):8765/gm)].map((m) => m[1]), ['sage', 'sage-2', 'sage-3'])
    assert.deepEqual(services.proxy!.ports, ['127.0.0.1:8766:8080'])
    assert.match(conf, /listen 8080;/)
  })

  test('the image is Node 22 LTS, as package.json\'s engines say', async () => {
    const dockerfile = await readFile(join(REPO_ROOT, 'Dockerfile'), 'utf8')
    const bases = [...dockerfile.matchAll(/^FROM node:(\d+)-/gm)].map((m) => m[1])
    assert.deepEqual(bases, ['22', '22'])
    const { engines } = JSON.parse(await readFile(join(REPO_ROOT, 'package.json'), 'utf8')) as { engines: { node: string } }
    assert.equal(engines.node, '>=22')
  })
})
