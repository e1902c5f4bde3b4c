import cliProgress from 'cli-progress'

/** Without a terminal, a progress line this often, so logs of long runs show they are alive. */
const PIPE_PROGRESS_MS = 10_000

export interface ProgressBar {
  /** `value` of `total` (total undefined: a count without a bar), and the words after it. */
  update(value: number, total: number | undefined, detail: string): void
  stop(): void
}

/**
 * A progress bar on standard error (cli-progress) when it is a terminal, else a plain line every ten seconds:
 * standard output stays for what the command writes (an export's lines).
 */
export function progressBar(label: string, unit: (value: number) => string): ProgressBar {
  const started = Date.now()
  if (process.stderr.isTTY !== true) {
    let last = started
    return {
      update(value, total, detail) {
        const now = Date.now()
        if (now - last < PIPE_PROGRESS_MS) return
        last = now
        process.stderr.write(`${label}: ${unit(value)}${total === undefined ? '' : ` of ${unit(total)}`}, ${detail}, ${Math.round((now - started) / 1000)} s\n`)
      },
      stop() {}
    }
  }
  let bar: cliProgress.SingleBar | undefined
  return {
    update(value, total, detail) {
      if (!bar) {
        const format = total === undefined ? `${label} {shown} | {detail} | {duration_formatted}` : `${label} [{bar}] {percentage}% | {shown} of {total_shown} | {detail} | eta {eta_formatted}`
        bar = new cliProgress.SingleBar({ format, stream: process.stderr, hideCursor: true, clearOnComplete: true }, cliProgress.Presets.shades_classic)
        bar.start(total ?? 0, 0, { shown: unit(0), total_shown: unit(total ?? 0), detail })
      }
      if (total !== undefined) bar.setTotal(total)
      bar.update(value, { shown: unit(value), total_shown: unit(total ?? value), detail })
    },
    stop() {
      bar?.stop()
    }
  }
}
