import { stemmer } from 'stemmer'
import { remembered } from '../remembered.js'

/** Terms longer than this (blobs, minified code, base64) are noise; 64 still keeps a SHA-256 in hex. */
export const MAX_TERM_LENGTH = 64

/** Dropped only when they stand alone as prose words, never when they are part of an identifier or path. */
const STOP_WORDS = new Set([
  'a', 'about', 'after', 'also', 'am', 'an', 'and', 'any', 'are', 'as', 'at', 'be', 'been', 'being', 'but', 'by',
  'can', 'could', 'did', 'do', 'does', 'for', 'from', 'had', 'has', 'have', 'he', 'her', 'his', 'how', 'i', 'if',
  'in', 'into', 'is', 'it', 'its', 'just', 'me', 'my', 'no', 'not', 'of', 'on', 'or', 'our', 'she', 'so', 'such',
  'than', 'that', 'the', 'their', 'them', 'then', 'there', 'these', 'they', 'this', 'those', 'to', 'too', 'very',
  'was', 'we', 'were', 'what', 'when', 'where', 'which', 'who', 'why', 'will', 'with', 'would', 'you', 'your'
])

const LOWER = 0
const UPPER = 1
const DIGIT = 2
const NONE = 3

const UNDERSCORE = 0x5f
const HYPHEN = 0x2d
const APOSTROPHE = 0x27
const RIGHT_SINGLE_QUOTE = 0x2019

/** Letters only: Postgres's parser splits words at Han radicals and other symbols that share the scripts. */
const CJK_LETTER = /^(?=[\p{L}\p{Nl}])[\p{Script=Han}\p{Script=Hiragana}\p{Script=Katakana}\p{Script=Hangul}\u30fc]$/u

/** Han, kana and Hangul letters: scripts written without spaces between words, indexed as character bigrams. */
export function isCjkCodePoint(cp: number): boolean {
  if (cp < 0x1100) return false
  if (cp <= 0x11ff) return true // Hangul Jamo
  if (cp < 0x3000) return false // other scripts, punctuation, symbols, Han radicals
  if (cp >= 0x4e00 && cp <= 0x9fff) return true // CJK Unified Ideographs
  if (cp >= 0xac00 && cp <= 0xd7a3) return true // Hangul syllables
  if (cp >= 0x3041 && cp <= 0x3096) return true // Hiragana letters
  if (cp >= 0x30a1 && cp <= 0x30fa) return true // Katakana letters
  if (cp >= 0x3000 && cp <= 0x303f) return cp === 0x3005 || cp === 0x3007 || (cp >= 0x3021 && cp <= 0x3029) || (cp >= 0x3038 && cp <= 0x303b)
  if (cp >= 0xd800 && cp <= 0xf8ff) return false // surrogates and private use
  if (cp >= 0xfb00 && cp < 0x1aff0) return false // forms NFKC folds away, other scripts, symbols
  if (cp >= 0x1b170 && cp < 0x20000) return false // other scripts, emoji, enclosed forms NFKC folds away
  return CJK_LETTER.test(String.fromCodePoint(cp))
}

/** Accented Latin folds to ASCII so "café" meets "cafe"; the rest keeps its case so camelCase still splits. */
const LATIN_FOLD: ReadonlyMap<number, string> = buildLatinFold()

function buildLatinFold(): Map<number, string> {
  const fold = new Map<number, string>()
  const special: Record<string, string> = {
    ß: 'ss', ẞ: 'SS', æ: 'ae', Æ: 'AE', œ: 'oe', Œ: 'OE', ø: 'o', Ø: 'O', đ: 'd', Đ: 'D', ð: 'd', Ð: 'D',
    ł: 'l', Ł: 'L', þ: 'th', Þ: 'TH', ı: 'i', ħ: 'h', Ħ: 'H', ŧ: 't', Ŧ: 'T', ŋ: 'ng', Ŋ: 'NG', ĸ: 'q'
  }
  for (const [char, ascii] of Object.entries(special)) fold.set(char.codePointAt(0) as number, ascii)
  const ranges: Array<[number, number]> = [[0xc0, 0x24f], [0x1e00, 0x1eff]]
  for (const [from, to] of ranges) {
    for (let cp = from; cp <= to; cp++) {
      if (fold.has(cp)) continue
      const base = String.fromCodePoint(cp).normalize('NFD').charCodeAt(0)
      if ((base >= 0x41 && base <= 0x5a) || (base >= 0x61 && base <= 0x7a)) fold.set(cp, String.fromCharCode(base))
    }
  }
  return fold
}

/** Porter stemming costs ~0.5 µs a word; vocabularies are small, so a bounded cache removes it from the hot path. */
const STEM_CACHE_LIMIT = 20_000
const stem = remembered(stemmer, STEM_CACHE_LIMIT)

function isAsciiLetter(code: number): boolean {
  return (code >= 0x61 && code <= 0x7a) || (code >= 0x41 && code <= 0x5a)
}

function isWordCode(code: number): boolean {
  return (code >= 0x61 && code <= 0x7a) || (code >= 0x41 && code <= 0x5a) || (code >= 0x30 && code <= 0x39) || LATIN_FOLD.has(code)
}

/** Characters that make a lone word part of a path or member access (`this.state`, `src/the/x`), so it is not a stop word. */
function isPathPunctuation(code: number): boolean {
  return code === 0x2e || code === 0x2f || code === 0x5c || code === 0x3a
}

const RETAINED_CAPACITY = 4096

function grown(array: Int32Array<ArrayBuffer>): Int32Array<ArrayBuffer> {
  const larger = new Int32Array(array.length * 2)
  larger.set(array)
  return larger
}

/** Reads one text into terms; holds its scratch buffers so the hot path allocates little more than the terms. */
class TermScanner {
  private source = ''
  private terms: string[] = []
  /** The word being read: lowercase ASCII codes, their kinds, and where each came from in the source. */
  private codes = new Uint16Array(256)
  private kinds = new Uint8Array(256)
  private positions = new Int32Array(256)
  private wordLength = 0
  private wordStart = 0
  /** Accented letters were folded or an apostrophe elided, so the word no longer lines up with the source and is built code by code. */
  private wordScattered = false
  private pendingJoin = false
  /** Offsets where `_` or `-` joined two runs of the word, and where its segments start; counts kept apart because `array.length = 0` is slow. */
  private joins = new Int32Array(256)
  private joinCount = 0
  private segmentStarts = new Int32Array(256)
  private segmentCount = 0
  /** Source offsets of the CJK run being read, one slot spare for its end. */
  private cjkOffsets = new Int32Array(256)
  private cjkCount = 0

  scan(text: string): string[] {
    const source = text.normalize('NFKC')
    const length = source.length
    this.source = source
    this.terms = []
    this.wordLength = 0
    this.wordScattered = false
    this.pendingJoin = false
    this.joinCount = 0
    this.cjkCount = 0
    let i = 0
    while (i < length) {
      const code = source.charCodeAt(i)
      if (code < 0x80) {
        if (code >= 0x61 && code <= 0x7a) this.addLetter(code, LOWER, i)
        else if (code >= 0x41 && code <= 0x5a) this.addLetter(code + 0x20, UPPER, i)
        else if (code >= 0x30 && code <= 0x39) this.addLetter(code, DIGIT, i)
        else if ((code === UNDERSCORE || code === HYPHEN) && this.wordLength > 0) this.pendingJoin = true
        else if (code === APOSTROPHE && this.isInWordApostrophe(i)) {
          i += this.apostropheWidth(i)
          continue
        } else {
          if (this.cjkCount > 0) this.endCjk(i)
          this.endWord(i)
        }
        i++
        continue
      }
      let cp = code
      let width = 1
      if (code >= 0xd800 && code <= 0xdbff && i + 1 < length) {
        const low = source.charCodeAt(i + 1)
        if (low >= 0xdc00 && low <= 0xdfff) {
          cp = (code - 0xd800) * 0x400 + (low - 0xdc00) + 0x10000
          width = 2
        }
      }
      if (cp === RIGHT_SINGLE_QUOTE && this.isInWordApostrophe(i)) {
        i += this.apostropheWidth(i)
        continue
      }
      if (isCjkCodePoint(cp)) {
        this.endWord(i)
        if (this.cjkCount + 1 === this.cjkOffsets.length) this.cjkOffsets = grown(this.cjkOffsets)
        this.cjkOffsets[this.cjkCount++] = i
      } else {
        const folded = LATIN_FOLD.get(cp)
        if (folded === undefined) {
          this.endCjk(i)
          this.endWord(i)
        } else {
          this.wordScattered = true
          for (let k = 0; k < folded.length; k++) {
            const foldedCode = folded.charCodeAt(k)
            if (foldedCode <= 0x5a) this.addLetter(foldedCode + 0x20, UPPER, i)
            else this.addLetter(foldedCode, LOWER, i)
          }
        }
      }
      i += width
    }
    this.endCjk(length)
    this.endWord(length)
    const terms = this.terms
    this.terms = []
    this.source = ''
    if (this.codes.length > RETAINED_CAPACITY || this.cjkOffsets.length > RETAINED_CAPACITY) this.shrink()
    return terms
  }

  /** An apostrophe between letters is part of the word: "don't" reads as "dont", not "don" and "t". */
  private isInWordApostrophe(at: number): boolean {
    return this.wordLength > 0 && isAsciiLetter(this.source.charCodeAt(at - 1)) && isAsciiLetter(this.source.charCodeAt(at + 1))
  }

  /** Skips the possessive "'s" whole (ledger's -> ledger, it's -> it, a stop word), any other apostrophe alone. */
  private apostropheWidth(at: number): number {
    const next = this.source.charCodeAt(at + 1)
    this.wordScattered = true
    return (next === 0x73 || next === 0x53) && !isAsciiLetter(this.source.charCodeAt(at + 2)) ? 2 : 1
  }

  private addLetter(code: number, kind: number, at: number): void {
    if (this.cjkCount > 0) this.endCjk(at)
    const index = this.wordLength
    if (index === 0) {
      this.wordStart = at
    } else if (this.pendingJoin) {
      this.joins[this.joinCount++] = index
      this.pendingJoin = false
    }
    if (index === this.codes.length) this.grow()
    this.codes[index] = code
    this.kinds[index] = kind
    this.positions[index] = at
    this.wordLength = index + 1
  }

  private grow(): void {
    const size = this.codes.length * 2
    const codes = new Uint16Array(size)
    codes.set(this.codes)
    this.codes = codes
    const kinds = new Uint8Array(size)
    kinds.set(this.kinds)
    this.kinds = kinds
    this.positions = grown(this.positions)
    this.joins = grown(this.joins)
    this.segmentStarts = grown(this.segmentStarts)
  }

  /** One giant word or CJK run (a base64 blob) should not pin its buffers for the life of the process. */
  private shrink(): void {
    this.cjkOffsets = new Int32Array(256)
    this.codes = new Uint16Array(256)
    this.kinds = new Uint8Array(256)
    this.positions = new Int32Array(256)
    this.joins = new Int32Array(256)
    this.segmentStarts = new Int32Array(256)
  }

  private kindAt(index: number, end: number): number {
    return index < end ? (this.kinds[index] as number) : NONE
  }

  /** Case boundaries inside one run of letters and digits: ledger|Export, HTTP|Server, Base64|Encode, but URLs and v2 stay whole. */
  private addCaseBoundaries(start: number, end: number): void {
    const kinds = this.kinds
    for (let k = start + 1; k < end; k++) {
      if (kinds[k] !== UPPER) continue
      const before = kinds[k - 1]
      const after = this.kindAt(k + 1, end)
      const boundary =
        before === LOWER ||
        (before === DIGIT && after === LOWER) ||
        (before === UPPER && after === LOWER && !(this.codes[k + 1] === 0x73 && this.kindAt(k + 2, end) !== LOWER))
      if (boundary) this.segmentStarts[this.segmentCount++] = k
    }
  }

  private segmentText(start: number, end: number): string {
    if (this.wordScattered) {
      let text = ''
      for (let k = start; k < end; k++) text += String.fromCharCode(this.codes[k] as number)
      return text
    }
    const text = this.source.slice(this.positions[start], (this.positions[end - 1] as number) + 1)
    for (let k = start; k < end; k++) if (this.kinds[k] === UPPER) return text.toLowerCase()
    return text
  }

  /** Stems words only: numbers, hashes and versions (v2, 550e8400) are kept as written. */
  private stemSegment(text: string, start: number, end: number): string {
    if (end - start < 3) return text
    for (let k = start; k < end; k++) if (this.kinds[k] === DIGIT) return text
    return stem(text)
  }

  private endWord(end: number): void {
    const wordLength = this.wordLength
    if (wordLength === 0) return
    this.segmentStarts[0] = 0
    this.segmentCount = 1
    let runStart = 0
    for (let j = 0; j < this.joinCount; j++) {
      const join = this.joins[j] as number
      this.addCaseBoundaries(runStart, join)
      this.segmentStarts[this.segmentCount++] = join
      runStart = join
    }
    this.addCaseBoundaries(runStart, wordLength)
    const segmentStarts = this.segmentStarts
    const segments = this.segmentCount
    if (segments === 1) {
      if (wordLength <= MAX_TERM_LENGTH) {
        const text = this.segmentText(0, wordLength)
        if (!STOP_WORDS.has(text) || this.inCode(end)) this.terms.push(this.stemSegment(text, 0, wordLength))
      }
    } else {
      let compound = ''
      for (let s = 0; s < segments; s++) {
        const start = segmentStarts[s] as number
        const segmentEnd = s + 1 < segments ? (segmentStarts[s + 1] as number) : wordLength
        if (segmentEnd - start > MAX_TERM_LENGTH) continue
        const part = this.stemSegment(this.segmentText(start, segmentEnd), start, segmentEnd)
        this.terms.push(part)
        compound += part
      }
      // Joined from the stemmed parts, so ledgerExports, ledger_export and LEDGER-EXPORT all meet on one compound.
      if (wordLength <= MAX_TERM_LENGTH) this.terms.push(compound)
    }
    this.wordLength = 0
    this.wordScattered = false
    this.pendingJoin = false
    this.joinCount = 0
  }

  /** A lone word touching `.`, `/`, `\` or `:` that touches another word is code (`this.state`, `src/the/x`), not prose. */
  private inCode(end: number): boolean {
    const source = this.source
    const start = this.wordStart
    return (
      (start >= 2 && isPathPunctuation(source.charCodeAt(start - 1)) && isWordCode(source.charCodeAt(start - 2))) ||
      (end + 1 < source.length && isPathPunctuation(source.charCodeAt(end)) && isWordCode(source.charCodeAt(end + 1)))
    )
  }

  private endCjk(end: number): void {
    const offsets = this.cjkOffsets
    const count = this.cjkCount
    if (count === 0) return
    offsets[count] = end
    if (count === 1) this.terms.push(this.source.slice(offsets[0], end))
    for (let k = 0; k + 1 < count; k++) this.terms.push(this.source.slice(offsets[k], offsets[k + 2]))
    this.cjkCount = 0
  }
}

/** tokenize is synchronous, so one scanner and its buffers serve every call. */
const scanner = new TermScanner()

/**
 * Splits text into the terms both recall sides share: stemmed English words, identifier parts plus their compound,
 * numbers, and CJK character bigrams. Every term is a non-empty run of [a-z0-9] or of CJK characters, so it is
 * safe as a `to_tsquery('simple', …)` operand. Terms come in order of appearance, duplicates kept.
 */
export function tokenize(text: string): string[] {
  return scanner.scan(text)
}

/** The distinct terms of a text in order of first appearance, e.g. for a `to_tsquery('simple', terms.join(' | '))`. */
export function uniqueTerms(text: string): string[] {
  return [...new Set(tokenize(text))]
}
