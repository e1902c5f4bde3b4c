import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { mkdir, mkdtemp, rm, utimes, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, test } from 'node:test'
import { pathToFileURL } from 'node:url'
import { promisify } from 'node:util'
import { REPO_ROOT } from '../helper.js'

const run = promisify(execFile)
const SCRIPT = pathToFileURL(join(REPO_ROOT, 'scripts/build-when-stale.js')).href

/** What the script says about a tree: why it would build, or "fresh". */
async function staleness(root: string): Promise<string> {
  const { stdout } = await run(process.execPath, ['--input-type=module', '-e', `import { staleness } from '${SCRIPT}'; console.log(staleness(${JSON.stringify(root)}) ?? 'fresh')`])
  return stdout.trim()
}

let root: string
after(() => rm(root, { recursive: true, force: true }))

test('npm start builds only when a source, the TypeScript settings or the lock file is newer than the build', async () => {
  root = await mkdtemp(join(tmpdir(), 'sage-stale-'))
  const at = (seconds: number) => new Date(1_700_000_000_000 + seconds * 1000)
  const file = async (path: string, seconds: number) => {
    await mkdir(join(root, path, '..'), { recursive: true })
    await writeFile(join(root, path), '')
    await utimes(join(root, path), at(seconds), at(seconds))
  }
  await file('tsconfig.json', 0)
  await file('src/cli.ts', 1)
  await file('src/commands/serve.ts', 1)
  await file('routes/health/index.ts', 1)
  await file('src/types.d.ts', 50)
  assert.equal(await staleness(root), 'src/cli.ts has no build')

  await file('dist/src/cli.js', 2)
  await file('dist/src/commands/serve.js', 2)
  await file('dist/routes/health/index.js', 2)
  assert.equal(await staleness(root), 'fresh', 'declaration files are not built')

  await file('routes/health/index.ts', 3)
  assert.equal(await staleness(root), 'routes/health/index.ts changed since the build')
  await file('dist/routes/health/index.js', 4)
  assert.equal(await staleness(root), 'fresh')

  await file('package-lock.json', 5)
  assert.equal(await staleness(root), 'the TypeScript settings or the dependencies changed since the build')
  await file('dist/src/cli.js', 6)
  await file('dist/src/commands/serve.js', 6)
  await file('dist/routes/health/index.js', 6)
  assert.equal(await staleness(root), 'fresh')

  // The page: Vite's bundle stands behind dist/ui/index.html.
  await file('ui/src/app.tsx', 7)
  assert.equal(await staleness(root), 'the page (ui/) has no build')
  await file('dist/ui/index.html', 8)
  await file('ui/node_modules/x/index.js', 9)
  assert.equal(await staleness(root), 'fresh', 'the page\'s node_modules are not its sources')
  await file('ui/src/app.tsx', 10)
  assert.equal(await staleness(root), 'ui/src/app.tsx changed since the build')
})
