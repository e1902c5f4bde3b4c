import { randomBytes } from 'node:crypto'
import { constants } from 'node:fs'
import { copyFile, mkdir, readdir, readFile, realpath, rename, rm, stat, writeFile } from 'node:fs/promises'
import { dirname, join } from 'node:path'

/**
 * An agent's settings file as Sage's installers change it (Claude Code's hooks, every agent's MCP servers):
 * read through a symbolic link (dotfile managers keep these files elsewhere), backed up before a change,
 * written atomically with the mode it had, and deleted again only when an install created it.
 */
export interface SettingsFile {
  /** The file itself, a symbolic link resolved. */
  path: string
  exists: boolean
  mode?: number
  /** Its text, or '' when it does not exist. */
  text: string
}

/** Where backups go: `dir` keeps the last BACKUPS_KEPT of each settings file, out of the project's tree. */
export type BackupOptions = { dir: string }

const BACKUPS_KEPT = 5
/** The settings files an install created, so an uninstall removes one it leaves empty. */
const CREATED_LIST = 'created-settings.json'

export async function readSettingsFile(settingsPath: string): Promise<SettingsFile> {
  const path = await realpath(settingsPath).catch(() => settingsPath)
  try {
    const text = await readFile(path, 'utf8')
    return { path, exists: true, mode: (await stat(path)).mode & 0o777, text }
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return { path, exists: false, text: '' }
    throw error
  }
}

/**
 * Replaces the file's text, creating it and its folders when missing (and, with `backups`, noting that it did);
 * answers the backup of the old one.
 */
export async function writeSettingsFile(file: SettingsFile, text: string, backups?: BackupOptions): Promise<{ backupPath?: string }> {
  await mkdir(dirname(file.path), { recursive: true })
  const backupPath = file.exists ? await backUp(file.path, backups) : undefined
  const temp = `${file.path}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`
  try {
    await writeFile(temp, text, { mode: file.mode ?? 0o644, flag: 'wx' })
    await rename(temp, file.path)
  } catch (error) {
    await rm(temp, { force: true })
    throw error
  }
  if (!file.exists && backups) await rememberCreated(backups.dir, file.path, true)
  return backupPath === undefined ? {} : { backupPath }
}

/** Deletes a file an install created (it goes the way it came, with no backup); false, and nothing done, for any other. */
export async function deleteCreatedSettingsFile(file: SettingsFile, backups?: BackupOptions): Promise<boolean> {
  if (!backups || !(await rememberCreated(backups.dir, file.path, false))) return false
  await rm(file.path)
  return true
}

/** Adds `path` to the list of created files, or takes it off (answering whether it was there). */
async function rememberCreated(dir: string, path: string, created: boolean): Promise<boolean> {
  const list = join(dir, CREATED_LIST)
  const paths: string[] = await readFile(list, 'utf8').then((text) => JSON.parse(text) as string[], () => [])
  const had = paths.includes(path)
  const next = created ? [...new Set([...paths, path])] : paths.filter((p) => p !== path)
  if (next.length !== paths.length || created !== had) {
    await mkdir(dir, { recursive: true })
    await writeFile(list, `${JSON.stringify(next, null, 2)}\n`)
  }
  return had
}

/**
 * Copies the file to `<name>.bak-<UTC timestamp>`, never overwriting an earlier backup: next to it, or with
 * `backups`, in that folder under a name made of the file's path, keeping the last BACKUPS_KEPT of each file.
 */
async function backUp(path: string, backups?: BackupOptions): Promise<string> {
  const stamp = new Date().toISOString().replace(/[:.]/g, '-')
  const base = backups ? join(backups.dir, path.replace(/^[\\/]+/, '').replace(/[\\/:]+/g, '_')) : path
  if (backups) await mkdir(backups.dir, { recursive: true })
  for (let attempt = 0; ; attempt++) {
    const backupPath = `${base}.bak-${stamp}${attempt === 0 ? '' : `-${attempt}`}`
    try {
      await copyFile(path, backupPath, constants.COPYFILE_EXCL)
      if (backups) await pruneBackups(backups.dir, `${base.slice(backups.dir.length + 1)}.bak-`)
      return backupPath
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error
    }
  }
}

async function pruneBackups(dir: string, prefix: string): Promise<void> {
  // The timestamps sort as text.
  const mine = (await readdir(dir)).filter((name) => name.startsWith(prefix)).sort()
  for (const name of mine.slice(0, -BACKUPS_KEPT)) await rm(join(dir, name), { force: true })
}
