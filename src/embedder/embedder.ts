/** Whether an embedder's vectors match words (the built-in one) or meaning (a model): recall weighs them accordingly. */
export type EmbedderKind = 'lexical' | 'semantic'

/** Turns text into vectors. Every implementation is stateless between calls and safe to share. */
export interface Embedder {
  /** Identifies the model and its output so vectors from different embedders are never mixed, e.g. "lexical-v1/384". */
  readonly id: string
  /** Length of every vector this embedder returns. */
  readonly dimension: number
  /**
   * What closeness of two vectors means: shared words (`lexical`, the built-in embedder) or shared meaning
   * (`semantic`, a model). Recall weighs the vector signal against the full-text one by it.
   */
  readonly kind: EmbedderKind
  /** Computed in process in less time than a cache lookup takes (hashing the text): not worth caching. */
  readonly local?: boolean
  /** One L2-normalised vector per input text, in input order. Rejects when the embedder is unreachable or times out. */
  embed(texts: readonly string[], signal?: AbortSignal): Promise<number[][]>
  /**
   * The same vectors as `embed`, for texts the caller already split with the shared tokenizer (src/text/tokenize.ts):
   * an embedder whose features are those terms skips splitting them again. `terms[i]` undefined: split `texts[i]`.
   */
  embedTokenized?(texts: readonly string[], terms: ReadonlyArray<readonly string[] | undefined>): Promise<number[][]>
  /** Lets go of what the embedder holds (a model's worker thread); calls after it reject. */
  close?(): Promise<void>
}
