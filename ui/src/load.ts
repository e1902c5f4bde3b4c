import { useCallback, useEffect, useRef, useState } from 'preact/hooks'

export interface Loaded<T> {
  data?: T
  error?: Error
  loading: boolean
  reload(): void
}

/**
 * Runs `load` whenever `deps` change, keeping the last answer on screen until the next one arrives (the page does
 * not jump while it loads); an answer that comes after a newer request started is dropped.
 */
export function useLoad<T>(load: () => Promise<T>, deps: readonly unknown[]): Loaded<T> {
  const [state, setState] = useState<{ data?: T; error?: Error; loading: boolean }>({ loading: true })
  const [round, setRound] = useState(0)
  const latest = useRef(0)
  useEffect(() => {
    const ticket = ++latest.current
    setState((previous) => ({ ...previous, loading: true }))
    load().then(
      (data) => ticket === latest.current && setState({ data, loading: false }),
      (error: Error) => ticket === latest.current && setState((previous) => ({ data: previous.data, error, loading: false }))
    )
  }, [...deps, round])
  const reload = useCallback(() => setRound((n) => n + 1), [])
  return { ...state, reload }
}
