// `npm start`'s first step: compiles only when a source is newer than its build, so a current build starts at once.
import { spawnSync } from 'node:child_process'
import console from 'node:console'
import { readdirSync, statSync } from 'node:fs'
import { join, relative } from 'node:path'
import process from 'node:process'
import { fileURLToPath, URL } from 'node:url'

const ROOT = fileURLToPath(new URL('..', import.meta.url))
/** What the service runs, as tsconfig.build.json compiles it into dist/. */
const SOURCE_DIRS = ['src', 'routes']
/** A change to these can change every output. */
const SETTINGS = ['tsconfig.json', 'tsconfig.build.json', 'package-lock.json']

const mtime = (path) => {
  try {
    return statSync(path).mtimeMs
  } catch {
    return undefined
  }
}

function* files(dir) {
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name)
    if (entry.isDirectory()) {
      if (entry.name !== 'node_modules') yield* files(path)
    } else yield path
  }
}

function* sources(dir) {
  for (const path of files(dir)) if (path.endsWith('.ts') && !path.endsWith('.d.ts')) yield path
}

/** Why a build is needed, or undefined when every output is newer than its source and the settings. */
export function staleness(root = ROOT) {
  const settings = Math.max(0, ...SETTINGS.map((name) => mtime(join(root, name)) ?? 0))
  for (const dir of SOURCE_DIRS) {
    for (const source of sources(join(root, dir))) {
      const name = relative(root, source)
      const built = mtime(join(root, 'dist', name.replace(/\.ts$/, '.js')))
      if (built === undefined) return `${name} has no build`
      if (built < mtime(source)) return `${name} changed since the build`
      if (built < settings) return 'the TypeScript settings or the dependencies changed since the build'
    }
  }
  // The page is bundled by Vite into dist/ui, under names it makes up: its index.html stands for the whole bundle.
  if (mtime(join(root, 'ui')) !== undefined) {
    const page = mtime(join(root, 'dist', 'ui', 'index.html'))
    if (page === undefined) return 'the page (ui/) has no build'
    for (const source of files(join(root, 'ui'))) if (mtime(source) > page) return `${relative(root, source)} changed since the build`
  }
  return undefined
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const reason = staleness()
  if (reason !== undefined) {
    console.error(`sage-memory: building (${reason})`)
    const build = spawnSync('npm', ['run', 'build', '--silent'], { cwd: ROOT, stdio: 'inherit' })
    process.exitCode = build.status ?? 1
  }
}
