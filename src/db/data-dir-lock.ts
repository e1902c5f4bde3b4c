import { link, mkdir, readFile, unlink, writeFile } from 'node:fs/promises'
import { join } from 'node:path'

/** The file in SAGE_DATA_DIR that says which process owns the embedded store: its PID, and nothing else. */
export const LOCK_FILE = 'sage.lock'

export class DataDirLockedError extends Error {
  constructor(
    readonly dir: string,
    readonly pid: number
  ) {
    super(
      `the embedded store in ${dir} is in use by another Sage process (PID ${pid}); two processes on one store corrupt it. ` +
      `Stop that one first, or give this one its own SAGE_DATA_DIR (if PID ${pid} is no Sage, delete ${join(dir, LOCK_FILE)})`
    )
    this.name = 'DataDirLockedError'
  }
}

export interface DataDirLock {
  readonly path: string
  /** Removes the lock file, if it is still this process's. */
  release(): Promise<void>
}

/** Lock files this process holds: a lock naming our own PID that is not among them was left by an earlier process (a container restarted). */
const held = new Set<string>()

/** Whether a process with this PID runs (EPERM: it does, as another user). */
export function processAlive(pid: number): boolean {
  if (pid === process.pid) return true
  try {
    process.kill(pid, 0)
    return true
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM'
  }
}

async function holderOf(path: string): Promise<number | undefined> {
  const text = await readFile(path, 'utf8').catch((error: NodeJS.ErrnoException) => (error.code === 'ENOENT' ? undefined : Promise.reject(error)))
  if (text === undefined) return undefined
  const pid = Number(text.trim())
  return Number.isInteger(pid) && pid > 0 ? pid : 0
}

/** Creates `path` holding our PID, atomically and only if it does not exist: the PID is written before the name appears. */
async function createExclusive(path: string): Promise<boolean> {
  const draft = `${path}.${process.pid}`
  await writeFile(draft, `${process.pid}\n`)
  try {
    await link(draft, path)
    return true
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') return false
    throw error
  } finally {
    await unlink(draft).catch(() => undefined)
  }
}

/** The PID that holds `path` if it is alive; undefined when the file is gone or left by a process that died. */
async function liveHolder(path: string): Promise<number | undefined> {
  const pid = await holderOf(path)
  return isLive(path, pid) ? pid : undefined
}

function isLive(path: string, pid: number | undefined): pid is number {
  return pid !== undefined && pid > 0 && processAlive(pid) && (pid !== process.pid || held.has(path))
}

/**
 * Removes a lock left by a dead process. Two processes may find the same stale lock: the takeover itself is
 * guarded by a second exclusive file, so only one removes it and the other then finds the winner's live lock.
 */
async function removeStale(path: string, stale: number | undefined): Promise<void> {
  const guard = `${path}.takeover`
  if (!(await createExclusive(guard))) {
    // Another process is taking over; a guard of a dead process is itself stale.
    if ((await liveHolder(guard)) === undefined) await unlink(guard).catch(() => undefined)
    else await new Promise((resolve) => setTimeout(resolve, 50))
    return
  }
  try {
    if ((await holderOf(path)) === stale) await unlink(path).catch(() => undefined)
  } finally {
    await unlink(guard).catch(() => undefined)
  }
}

/**
 * Takes the exclusive lock on `dir` (created if missing) for this process, or throws DataDirLockedError naming the
 * PID of the live process that holds it. A lock whose process has died is taken over.
 */
export async function lockDataDir(dir: string): Promise<DataDirLock> {
  await mkdir(dir, { recursive: true })
  const path = join(dir, LOCK_FILE)
  for (let attempt = 0; attempt < 100; attempt++) {
    if (await createExclusive(path)) {
      held.add(path)
      return {
        path,
        async release() {
          if (!held.delete(path)) return
          if ((await holderOf(path).catch(() => undefined)) === process.pid) await unlink(path).catch(() => undefined)
        }
      }
    }
    const holder = await holderOf(path)
    if (isLive(path, holder)) throw new DataDirLockedError(dir, holder)
    await removeStale(path, holder)
  }
  throw new Error(`could not take the lock ${path}: it keeps changing hands`)
}

/** The live process holding `dir`'s lock, if any: what commands ask before they open the store themselves. */
export async function dataDirHolder(dir: string): Promise<number | undefined> {
  return liveHolder(join(dir, LOCK_FILE))
}
