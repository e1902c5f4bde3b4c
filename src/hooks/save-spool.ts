import { randomBytes } from 'node:crypto'
import { mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises'
import { basename, join } from 'node:path'

/**
 * The retry buffer's saves on disk, written as they enter it and removed as they leave, so a process that is killed
 * outright (SIGKILL, a crash, the machine going down) loses none: the next start replays what is left.
 * JSON Lines files named after the time and the writing process, so two processes sharing the folder never
 * overwrite each other's, and a start replays only the files of processes that are gone.
 */
export interface SaveSpool<T> {
  /** Writes `items` as one new file (a temporary name renamed into place, readable by this user only: it holds prompts); resolves with its path. */
  write(items: readonly T[]): Promise<string>
  /**
   * Every item spooled by a process that is no longer running (or by an earlier process of this one's PID), oldest
   * file first, each with its file; a line that is not an item is counted as corrupt. `files` lists every file read.
   */
  read(): Promise<{ entries: Array<SpooledItem<T>>; corrupt: number; files: string[] }>
  /** Removes a file once none of its items is waiting any more. */
  remove(file: string): Promise<void>
}

export interface SpooledItem<T> {
  item: T
  file: string
}

const SUFFIX = '.jsonl'

export function createSaveSpool<T>(dir: string, isItem: (value: unknown) => value is T): SaveSpool<T> {
  return {
    async write(items) {
      await mkdir(dir, { recursive: true, mode: 0o700 })
      // The time first, so files sort oldest first; the PID tells whose they are, the random part keeps names apart.
      const name = `${Date.now().toString().padStart(15, '0')}-${process.pid}-${randomBytes(4).toString('hex')}`
      const temp = join(dir, `${name}.tmp`)
      await writeFile(temp, items.map((item) => `${JSON.stringify(item)}\n`).join(''), { mode: 0o600, flush: true })
      const file = join(dir, name + SUFFIX)
      await rename(temp, file)
      return file
    },
    async read() {
      const names = await readdir(dir).catch((error: NodeJS.ErrnoException) => {
        if (error.code === 'ENOENT') return []
        throw error
      })
      const files = names.filter((name) => name.endsWith(SUFFIX) && !ownedByLiveProcess(name)).sort().map((name) => join(dir, name))
      const entries: Array<SpooledItem<T>> = []
      let corrupt = 0
      for (const file of files) {
        for (const line of (await readFile(file, 'utf8')).split('\n')) {
          if (line.trim() === '') continue
          const value = parseLine(line)
          if (isItem(value)) entries.push({ item: value, file })
          else corrupt++
        }
      }
      return { entries, corrupt, files }
    },
    async remove(file) {
      await rm(file, { force: true })
    }
  }
}

/** A file written by another process that still runs is that process's to replay; this PID's are an earlier life's. */
function ownedByLiveProcess(name: string): boolean {
  const pid = Number(basename(name).split('-')[1])
  if (!Number.isSafeInteger(pid) || pid <= 0 || pid === process.pid) return false
  try {
    process.kill(pid, 0)
    return true
  } catch (error) {
    // EPERM: the PID is alive under another user, so not a Sage of ours that died.
    return (error as NodeJS.ErrnoException).code === 'EPERM'
  }
}

function parseLine(line: string): unknown {
  try {
    return JSON.parse(line)
  } catch {
    return undefined
  }
}
