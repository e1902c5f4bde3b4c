import { randomBytes } from 'node:crypto'
import { mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'

/**
 * Saves the retry buffer still held when the process stopped, on disk until the next start replays them.
 * One JSON Lines file per shutdown, so two processes sharing the folder never overwrite each other's.
 */
export interface SaveSpool<T> {
  /** Writes `items` as one new file: a temporary name renamed into place, readable by this user only (it holds prompts). */
  write(items: readonly T[]): Promise<void>
  /** Every spooled item, oldest file first; a line that is not an item is skipped and counted as corrupt. */
  read(): Promise<{ items: T[]; corrupt: number; files: string[] }>
  /** Removes files `read` returned, once their items are written or buffered again. */
  remove(files: readonly string[]): Promise<void>
}

const SUFFIX = '.jsonl'

export function createSaveSpool<T>(dir: string, isItem: (value: unknown) => value is T): SaveSpool<T> {
  return {
    async write(items) {
      await mkdir(dir, { recursive: true, mode: 0o700 })
      // The time first, so files sort oldest first; the random part keeps two processes' names apart.
      const name = `${Date.now().toString().padStart(15, '0')}-${process.pid}-${randomBytes(4).toString('hex')}`
      const temp = join(dir, `${name}.tmp`)
      await writeFile(temp, items.map((item) => `${JSON.stringify(item)}\n`).join(''), { mode: 0o600, flush: true })
      await rename(temp, join(dir, name + SUFFIX))
    },
    async read() {
      const names = await readdir(dir).catch((error: NodeJS.ErrnoException) => {
        if (error.code === 'ENOENT') return []
        throw error
      })
      const files = names.filter((name) => name.endsWith(SUFFIX)).sort().map((name) => join(dir, name))
      const items: T[] = []
      let corrupt = 0
      for (const file of files) {
        for (const line of (await readFile(file, 'utf8')).split('\n')) {
          if (line.trim() === '') continue
          const value = parseLine(line)
          if (isItem(value)) items.push(value)
          else corrupt++
        }
      }
      return { items, corrupt, files }
    },
    async remove(files) {
      for (const file of files) await rm(file, { force: true })
    }
  }
}

function parseLine(line: string): unknown {
  try {
    return JSON.parse(line)
  } catch {
    return undefined
  }
}
