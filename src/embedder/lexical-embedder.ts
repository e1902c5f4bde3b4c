import { tokenize } from '../text/tokenize.js'
import type { Embedder } from './embedder.js'

const DEFAULT_DIMENSION = 384
/** pgvector's limit for the `vector` type. */
const MAX_DIMENSION = 16_000

const FNV_OFFSET = 0x811c9dc5
const FNV_PRIME = 0x01000193
/** Distinct seeds make the term "log" and the 3-gram "log" inside "catalog" different features. */
const TERM_SEED = FNV_OFFSET
const GRAM_SEED = Math.imul(FNV_OFFSET ^ 0x67, FNV_PRIME) >>> 0
const RAW_SEED = Math.imul(FNV_OFFSET ^ 0x72, FNV_PRIME) >>> 0
/** 3-grams carry the word's edges, so "led" at the start of "ledger" differs from "led" inside "canceled". */
const WORD_START = 0x02
const WORD_END = 0x03
/** A term's 3-grams together weigh as much as the term: a typo keeps about half the match, whole words still decide. */
const GRAM_SHARE = 1

function fnvStep(hash: number, code: number): number {
  return Math.imul(hash ^ code, FNV_PRIME)
}

/** Murmur3's finaliser: FNV's low bits are weak, and the index and the sign both come from them. */
function mix(hash: number): number {
  hash ^= hash >>> 16
  hash = Math.imul(hash, 0x85ebca6b)
  hash ^= hash >>> 13
  hash = Math.imul(hash, 0xc2b2ae35)
  hash ^= hash >>> 16
  return hash >>> 0
}

/** Matches words (stems, identifier parts, CJK bigrams, 3-grams for typos) by feature hashing, not meaning: no model, offline, deterministic. */
export class LexicalEmbedder implements Embedder {
  readonly id: string
  readonly kind = 'lexical'
  readonly dimension: number
  readonly local = true
  /** Scratch for one text at a time; embedText never awaits, so sharing the instance stays safe. */
  private readonly sums: Float64Array
  /** Term counts in an open-addressing table keyed by the term's hash: a Map of fresh strings costs more than the hashing. */
  private slotHashes = new Int32Array(1024)
  private slotCounts = new Int32Array(1024)
  private slotTerms = new Int32Array(1024)
  private usedSlots = new Int32Array(512)

  constructor(options: { dimension?: number } = {}) {
    const dimension = options.dimension ?? DEFAULT_DIMENSION
    if (!Number.isInteger(dimension) || dimension < 1 || dimension > MAX_DIMENSION) {
      throw new RangeError(`dimension must be an integer from 1 to ${MAX_DIMENSION}, got ${dimension}`)
    }
    this.dimension = dimension
    this.id = `lexical-v1/${dimension}`
    this.sums = new Float64Array(dimension)
  }

  async embed(texts: readonly string[], signal?: AbortSignal): Promise<number[][]> {
    signal?.throwIfAborted()
    const vectors: number[][] = []
    for (const text of texts) {
      vectors.push(this.embedText(text))
      // A huge batch takes a while on the event loop; stop between texts once the caller gave up.
      signal?.throwIfAborted()
    }
    return vectors
  }

  /** A save splits its text once for full-text search and hands the terms here too: splitting is most of embedding. */
  async embedTokenized(texts: readonly string[], terms: ReadonlyArray<readonly string[] | undefined>): Promise<number[][]> {
    return texts.map((text, i) => this.embedText(text, terms[i]))
  }

  /** One text's vector, synchronously (the content analyzer calls it inside its workers). */
  embedText(text: string, known?: readonly string[]): number[] {
    const sums = this.sums
    sums.fill(0)
    const terms = known ?? tokenize(text)
    const distinct = this.countTerms(terms)
    for (let u = 0; u < distinct; u++) {
      const slot = this.usedSlots[u] as number
      const count = this.slotCounts[slot] as number
      this.slotCounts[slot] = 0
      this.addTerm(terms[this.slotTerms[slot] as number] as string, this.slotHashes[slot] as number, 1 + Math.log(count))
    }
    if (distinct === 0) this.addRawText(text)
    let squares = 0
    for (let i = 0; i < sums.length; i++) squares += (sums[i] as number) ** 2
    const vector = new Array<number>(sums.length)
    if (squares === 0) {
      // Colliding features cancelled out exactly: a one-hot of the text keeps the vector unit-length and stable.
      vector.fill(0)
      let hash = RAW_SEED
      for (let i = 0; i < text.length; i++) hash = fnvStep(hash, text.charCodeAt(i))
      vector[mix(hash) % sums.length] = 1
      return vector
    }
    const scale = 1 / Math.sqrt(squares)
    for (let i = 0; i < sums.length; i++) vector[i] = (sums[i] as number) * scale
    return vector
  }

  private addFeature(hash: number, weight: number): void {
    const mixed = mix(hash)
    const index = (mixed >>> 1) % this.dimension
    this.sums[index] = (this.sums[index] as number) + ((mixed & 1) === 1 ? weight : -weight)
  }

  /** Counts each distinct term once, by hash: two terms sharing all 32 bits would share a feature slot anyway. */
  private countTerms(terms: readonly string[]): number {
    let size = this.slotCounts.length
    if (size < terms.length * 2) {
      while (size < terms.length * 2) size *= 2
      this.slotHashes = new Int32Array(size)
      this.slotCounts = new Int32Array(size)
      this.slotTerms = new Int32Array(size)
      this.usedSlots = new Int32Array(size / 2)
    }
    const mask = size - 1
    const hashes = this.slotHashes
    const counts = this.slotCounts
    let distinct = 0
    for (let t = 0; t < terms.length; t++) {
      const term = terms[t] as string
      let hash = TERM_SEED
      for (let i = 0; i < term.length; i++) hash = fnvStep(hash, term.charCodeAt(i))
      let slot = mix(hash) & mask
      while (counts[slot] !== 0 && hashes[slot] !== hash) slot = (slot + 1) & mask
      if (counts[slot] === 0) {
        hashes[slot] = hash
        this.slotTerms[slot] = t
        this.usedSlots[distinct++] = slot
      }
      counts[slot] = (counts[slot] as number) + 1
    }
    return distinct
  }

  private addTerm(term: string, hash: number, weight: number): void {
    this.addFeature(hash, weight)
    // CJK terms are already character bigrams; only Latin terms get 3-grams.
    if (term.charCodeAt(0) >= 0x80) return
    const grams = term.length
    const gramWeight = (weight * GRAM_SHARE) / Math.sqrt(grams)
    let previous = WORD_START
    let current = term.charCodeAt(0)
    for (let i = 1; i <= grams; i++) {
      const next = i < grams ? term.charCodeAt(i) : WORD_END
      this.addFeature(fnvStep(fnvStep(fnvStep(GRAM_SEED, previous), current), next), gramWeight)
      previous = current
      current = next
    }
  }

  /** Text with no terms (punctuation, scripts the tokenizer drops) still gets a lexical vector from its characters. */
  private addRawText(text: string): void {
    const source = text.normalize('NFKC').toLowerCase()
    if (source.length < 3) {
      let hash = RAW_SEED
      for (let i = 0; i < source.length; i++) hash = fnvStep(hash, source.charCodeAt(i))
      this.addFeature(hash, 1)
      return
    }
    for (let i = 0; i + 3 <= source.length; i++) {
      this.addFeature(fnvStep(fnvStep(fnvStep(RAW_SEED, source.charCodeAt(i)), source.charCodeAt(i + 1)), source.charCodeAt(i + 2)), 1)
    }
  }
}
