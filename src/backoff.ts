/** The wait before retry number `attempt` (0 for the first): doubling from `baseMs`, never above `maxMs`. */
export function backoffDelay(attempt: number, baseMs: number, maxMs: number): number {
  return Math.min(maxMs, baseMs * 2 ** Math.min(Math.max(attempt, 0), 30))
}

/** Equal jitter: half of `ms` fixed so retries never bunch at zero, half random so clients spread out. */
export function jittered(ms: number): number {
  return ms / 2 + Math.random() * (ms / 2)
}
