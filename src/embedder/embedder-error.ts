/** A failed `embed` call. `retryable` says whether the same input may succeed later (server down, overloaded, slow, or the caller aborted). */
export class EmbedderError extends Error {
  override readonly name = 'EmbedderError'
  readonly retryable: boolean
  /** HTTP status of the last answer, when there was one. */
  readonly status: number | undefined

  constructor(message: string, options: { retryable: boolean; status?: number; cause?: unknown }) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause })
    this.retryable = options.retryable
    this.status = options.status
  }
}
