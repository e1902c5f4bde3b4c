/**
 * `compute` with its results kept for up to `limit` distinct keys, all forgotten at once when full (cheaper than
 * an LRU, and the inputs it serves repeat in bursts): only for pure functions.
 */
export function remembered<V>(compute: (key: string) => V, limit: number): (key: string) => V {
  const results = new Map<string, V>()
  return (key) => {
    let result = results.get(key)
    if (result === undefined) {
      if (results.size >= limit) results.clear()
      result = compute(key)
      results.set(key, result)
    }
    return result
  }
}
