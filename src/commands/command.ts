/** A `sage-memory` subcommand. `run` resolves to the exit code, or to undefined to keep the process running. */
export interface Command {
  /** One line for the usage text, after the name. */
  summary: string
  /** Extra usage lines (arguments and options), indented under the summary. */
  usage?: string
  run(args: string[]): Promise<number | undefined>
}
