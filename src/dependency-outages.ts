import type { FastifyBaseLogger } from 'fastify'
import type { Dependency } from './classify-failure.js'
import type { SageMetrics } from './metrics/sage-metrics.js'

/** How often a dependency known to be down is asked whether it is back. */
const PROBE_EVERY_MS = 500

export interface DependencyOutages {
  /** A request was refused (503) because `dependency` is in trouble: the first refusal of an outage logs it. */
  refused(dependency: Dependency, reason: string): void
  isUp(dependency: Dependency): boolean
  stop(): void
}

/**
 * One warning when a dependency goes down and one line when it is back, with the requests refused meanwhile,
 * instead of a stack trace per refused request. Back means its probe answers again.
 */
export function createDependencyOutages(options: {
  log: FastifyBaseLogger
  metrics: SageMetrics
  probes: Partial<Record<Dependency, () => Promise<unknown>>>
}): DependencyOutages {
  const { log, metrics } = options
  const outages = new Map<Dependency, { since: number; refused: number; timer?: NodeJS.Timeout }>()
  let stopped = false
  for (const dependency of Object.keys(options.probes) as Dependency[]) metrics.dependencyUp.set({ dependency }, 1)

  function probeLater(dependency: Dependency): void {
    const outage = outages.get(dependency)
    const probe = options.probes[dependency]
    if (!outage || stopped) return
    outage.timer = setTimeout(() => {
      const answered = probe ? probe().then(() => true, () => false) : Promise.resolve(true)
      void answered.then((up) => {
        if (!up) return probeLater(dependency)
        outages.delete(dependency)
        metrics.dependencyUp.set({ dependency }, 1)
        log.info({ dependency, refused: outage.refused, down_ms: Date.now() - outage.since }, `${dependency} is back`)
      })
    }, PROBE_EVERY_MS)
    outage.timer.unref()
  }

  return {
    refused(dependency, reason) {
      metrics.dependencyRefused.inc({ dependency })
      const outage = outages.get(dependency)
      if (outage) {
        outage.refused++
        return
      }
      outages.set(dependency, { since: Date.now(), refused: 1 })
      metrics.dependencyUp.set({ dependency }, 0)
      log.warn({ dependency, reason }, `${dependency} is down or busy; answering 503 until it is back`)
      probeLater(dependency)
    },
    isUp: (dependency) => !outages.has(dependency),
    stop() {
      stopped = true
      for (const outage of outages.values()) clearTimeout(outage.timer)
    }
  }
}
