/** An error whose status, code and message are safe to show the caller as they are. */
export class SageError extends Error {
  constructor(
    readonly statusCode: number,
    readonly code: string,
    message: string,
    readonly headers: Record<string, string> = {}
  ) {
    super(message)
    this.name = 'SageError'
  }
}

export const validationError = (message: string) => new SageError(400, 'SAGE_VALIDATION', message)
export const notFound = (message = 'memory not found') => new SageError(404, 'SAGE_NOT_FOUND', message)
