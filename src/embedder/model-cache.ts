import { readdir, stat } from 'node:fs/promises'
import { join, relative, sep } from 'node:path'

/** A model downloaded into the cache. */
export interface CachedModel {
  /** Its id on the hub, which is its folder under the cache. */
  id: string
  path: string
  /** Bytes on disk, every file of it. */
  bytes: number
  /** Its ONNX weights (`model.onnx`, `model_quantized.onnx`, …); none means the download did not finish. */
  weights: string[]
}

async function filesUnder(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { withFileTypes: true }).catch(() => [])
  const nested = await Promise.all(entries.map((entry) => (entry.isDirectory() ? filesUnder(join(dir, entry.name)) : [join(dir, entry.name)])))
  return nested.flat()
}

/** The models in `cacheDir`, by id: every folder holding a config.json, as transformers.js lays them out. */
export async function listCachedModels(cacheDir: string): Promise<CachedModel[]> {
  const files = await filesUnder(cacheDir)
  const models: CachedModel[] = []
  for (const config of files.filter((file) => file.endsWith(`${sep}config.json`))) {
    const path = config.slice(0, -`${sep}config.json`.length)
    const own = files.filter((file) => file.startsWith(`${path}${sep}`))
    const sizes = await Promise.all(own.map((file) => stat(file).then((s) => s.size, () => 0)))
    const weights = own.filter((file) => file.startsWith(join(path, 'onnx') + sep) && file.endsWith('.onnx')).map((file) => relative(join(path, 'onnx'), file))
    models.push({ id: relative(cacheDir, path).split(sep).join('/'), path, bytes: sizes.reduce((a, b) => a + b, 0), weights: weights.sort() })
  }
  return models.sort((a, b) => a.id.localeCompare(b.id))
}
