import { randomBytes } from 'node:crypto'
import { constants } from 'node:fs'
import { copyFile, mkdir, readFile, realpath, rename, rm, stat, writeFile } from 'node:fs/promises'
import { dirname } from 'node:path'

/**
 * An agent's settings file as Sage's installers change it (Claude Code's hooks, every agent's MCP servers):
 * read through a symbolic link (dotfile managers keep these files elsewhere), backed up before a change,
 * written atomically with the mode it had.
 */
export interface SettingsFile {
  /** The file itself, a symbolic link resolved. */
  path: string
  exists: boolean
  mode?: number
  /** Its text, or '' when it does not exist. */
  text: string
}

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

/** Replaces the file's text (creating it and its folders when missing); answers the backup of the old one. */
export async function writeSettingsFile(file: SettingsFile, text: string): Promise<{ backupPath?: string }> {
  await mkdir(dirname(file.path), { recursive: true })
  const backupPath = file.exists ? await backUp(file.path) : undefined
  const temp = `${file.path}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`
  try {
    await writeFile(temp, text, { mode: file.mode ?? 0o644, flag: 'wx' })
    await rename(temp, file.path)
  } catch (error) {
    await rm(temp, { force: true })
    throw error
  }
  return backupPath === undefined ? {} : { backupPath }
}

/** Deletes the file, after backing it up. */
export async function removeSettingsFile(file: SettingsFile): Promise<{ backupPath: string }> {
  const backupPath = await backUp(file.path)
  await rm(file.path)
  return { backupPath }
}

/** Copies the file to `<path>.bak-<UTC timestamp>`, never overwriting an earlier backup. */
async function backUp(path: string): Promise<string> {
  const stamp = new Date().toISOString().replace(/[:.]/g, '-')
  for (let attempt = 0; ; attempt++) {
    const backupPath = `${path}.bak-${stamp}${attempt === 0 ? '' : `-${attempt}`}`
    try {
      await copyFile(path, backupPath, constants.COPYFILE_EXCL)
      return backupPath
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error
    }
  }
}
