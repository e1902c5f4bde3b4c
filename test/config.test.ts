import assert from 'node:assert/strict'
import { readFile } from 'node:fs/promises'
import { test } from 'node:test'
import { parse } from 'yaml'
import { join } from 'node:path'
import { ConfigSchema, dataDir, embeddingModel, embeddingProvider, loadConfig, modelCacheDir } from '../src/config.js'
import { servicePaths } from '../src/service/service-files.js'
import { userDataDir } from '../src/user-data-dir.js'
import { REPO_ROOT } from './helper.js'

test('defaults serve on 127.0.0.1:8765 with the embedded store', () => {
  const config = loadConfig({})
  assert.equal(config.HOST, '127.0.0.1')
  assert.equal(config.PORT, 8765)
  assert.equal(config.DATABASE_URL, undefined)
  assert.equal(config.SAGE_DATA_DIR, undefined)
  assert.equal(dataDir(config), userDataDir(), 'the store is the user\'s own, whatever folder a command runs in')
  assert.equal(config.DB_POOL_MAX, 10)
})

test('the user\'s data folder: XDG data home, else ~/.local/share, on macOS Application Support; the service uses the same', () => {
  assert.equal(userDataDir({ XDG_DATA_HOME: '/xdg' }, '/home/ann', 'linux'), '/xdg/sage-memory')
  assert.equal(userDataDir({}, '/home/ann', 'linux'), '/home/ann/.local/share/sage-memory')
  assert.equal(userDataDir({ XDG_DATA_HOME: 'relative' }, '/home/ann', 'linux'), '/home/ann/.local/share/sage-memory', 'a relative XDG value is ignored')
  assert.equal(userDataDir({ XDG_DATA_HOME: '/xdg' }, '/Users/ann', 'darwin'), '/Users/ann/Library/Application Support/sage-memory')
  for (const [platform, home, env] of [['linux', '/home/ann', { XDG_DATA_HOME: '/xdg' }], ['linux', '/home/ann', {}], ['darwin', '/Users/ann', {}]] as const) {
    assert.equal(servicePaths(platform, home, env).dataDir, userDataDir(env, home, platform))
  }
  assert.equal(dataDir({ SAGE_DATA_DIR: '/srv/sage' }), '/srv/sage')
})

test('numbers and booleans are read from strings', () => {
  const config = loadConfig({ PORT: '9000', DB_POOL_MAX: '4', SAGE_REDACT_SECRETS: 'false' })
  assert.equal(config.PORT, 9000)
  assert.equal(config.DB_POOL_MAX, 4)
  assert.equal(config.SAGE_REDACT_SECRETS, false)
})

test('a bad value stops the start with a message naming the variable', () => {
  assert.throws(() => loadConfig({ PORT: 'eighty' }), /PORT/)
  assert.throws(() => loadConfig({ DB_POOL_MAX: '0' }), /DB_POOL_MAX/)
  assert.throws(() => loadConfig({ LOG_LEVEL: 'loud' }), /LOG_LEVEL/)
  assert.throws(() => loadConfig({ EMBEDDING_URL: 'http://127.0.0.1:11434' }), /EMBEDDING_DIMENSIONS/)
  assert.throws(() => loadConfig({ EMBEDDING_PROVIDER: 'openai' }), /EMBEDDING_URL/)
})

test('a local model: chosen by name only, with its own default model and a cache under the data directory', () => {
  const local = loadConfig({ EMBEDDING_PROVIDER: 'local', SAGE_DATA_DIR: '/var/sage' })
  assert.equal(embeddingProvider(local), 'local')
  assert.equal(embeddingModel(local, 'local'), 'Xenova/all-MiniLM-L6-v2')
  assert.equal(modelCacheDir(local), join('/var/sage', 'models'))
  assert.equal(local.EMBEDDING_LOCAL_DOWNLOAD, false)
  assert.equal(embeddingModel(loadConfig({ EMBEDDING_URL: 'http://127.0.0.1:11434', EMBEDDING_DIMENSIONS: '768' }), 'openai'), 'text-embedding-3-small')
  assert.equal(modelCacheDir(loadConfig({ EMBEDDING_LOCAL_CACHE_DIR: '/models' })), '/models')
  assert.throws(() => loadConfig({ EMBEDDING_PROVIDER: 'onnx' }), /EMBEDDING_PROVIDER/)
  assert.throws(() => loadConfig({ EMBEDDING_LOCAL_DTYPE: 'fp64' }), /EMBEDDING_LOCAL_DTYPE/)
})

test('docker-compose.yml gives Sage only variables the configuration schema knows', async () => {
  // Merge keys on: the replicas share one definition (x-sage) and one environment.
  const compose = parse(await readFile(join(REPO_ROOT, 'docker-compose.yml'), 'utf8'), { merge: true })
  const environment = compose.services.sage.environment as Record<string, string>
  const known = new Set(Object.keys(ConfigSchema.properties))
  for (const name of Object.keys(environment)) assert.ok(known.has(name), `docker-compose.yml sets ${name}, which Sage does not read`)
  assert.equal(environment.HOST, '0.0.0.0')
  assert.match(environment.DATABASE_URL!, /^postgres:\/\/.+@postgres:5432\//)
  const dependsOn = compose.services.sage.depends_on as Record<string, { condition: string }>
  assert.equal(dependsOn.postgres?.condition, 'service_healthy')
  assert.ok(compose.services.postgres.healthcheck, 'postgres has a health check')
  assert.match(compose.services.postgres.image, /pgvector/)
})

test('the README documents every configuration variable', async () => {
  const readme = await readFile(join(REPO_ROOT, 'README.md'), 'utf8')
  const section = readme.slice(readme.indexOf('<!-- config:begin -->'), readme.indexOf('<!-- config:end -->'))
  for (const name of Object.keys(ConfigSchema.properties)) assert.match(section, new RegExp(`\\| \`${name}\` \\|`), `README lacks ${name}`)
})
