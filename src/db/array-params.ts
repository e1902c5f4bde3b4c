// Arrays of text, uuid and timestamptz as query parameters in Postgres's binary form, as vector-param.ts does for
// vectors: a save's insert sends a dozen such arrays, and text would be escaped here and parsed again there (BENCHMARKS.md, "Reading these results").

/** Built-in type oids: fixed in every Postgres (and PGlite), unlike the vector extension's. */
const TEXT_OID = 25
const UUID_OID = 2950
const TIMESTAMPTZ_OID = 1184
/** The array types these parameters arrive as, for a driver that must be told to pass them through (PGlite). */
export const BINARY_ARRAY_OIDS = [1009, 2951, 1185] as const

/** A one-dimensional array's header: ndim, has-nulls flag, element type, then the dimension's length and lower bound. */
export const ARRAY_HEADER = 20
/** Postgres counts timestamps in microseconds from 2000-01-01 UTC. */
const POSTGRES_EPOCH_MS = Date.UTC(2000, 0, 1)
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i

export function writeArrayHeader(buffer: Buffer, length: number, elementOid: number, hasNulls: boolean): void {
  buffer.writeInt32BE(1, 0)
  buffer.writeInt32BE(hasNulls ? 1 : 0, 4)
  buffer.writeUInt32BE(elementOid, 8)
  buffer.writeInt32BE(length, 12)
  buffer.writeInt32BE(1, 16)
}

/** Strings, or NULLs, as one `text[]` parameter, each element its UTF-8 bytes. */
export function textArrayParam(values: ReadonlyArray<string | null | undefined>): Buffer {
  let size = ARRAY_HEADER
  let hasNulls = false
  for (const value of values) {
    if (value == null) hasNulls = true
    size += 4 + (value == null ? 0 : Buffer.byteLength(value, 'utf8'))
  }
  const buffer = Buffer.allocUnsafe(size)
  writeArrayHeader(buffer, values.length, TEXT_OID, hasNulls)
  let offset = ARRAY_HEADER
  for (const value of values) {
    if (value == null) {
      buffer.writeInt32BE(-1, offset)
      offset += 4
      continue
    }
    const written = buffer.write(value, offset + 4, 'utf8')
    buffer.writeInt32BE(written, offset)
    offset += 4 + written
  }
  return buffer
}

/** Values of a fixed-width type as one array parameter: each element its width, then `write`'s bytes. */
function fixedWidthArrayParam<T>(values: readonly T[], elementOid: number, width: number, write: (buffer: Buffer, offset: number, value: T) => void): Buffer {
  const buffer = Buffer.allocUnsafe(ARRAY_HEADER + values.length * (4 + width))
  writeArrayHeader(buffer, values.length, elementOid, false)
  let offset = ARRAY_HEADER
  for (const value of values) {
    buffer.writeInt32BE(width, offset)
    write(buffer, offset + 4, value)
    offset += 4 + width
  }
  return buffer
}

/** UUIDs in their usual text form as one `uuid[]` parameter; one that is not a UUID is refused before sending. */
export function uuidArrayParam(values: readonly string[]): Buffer {
  return fixedWidthArrayParam(values, UUID_OID, 16, (buffer, offset, value) => {
    if (!UUID.test(value)) throw new RangeError(`not a UUID: ${JSON.stringify(value)}`)
    buffer.write(value.replaceAll('-', ''), offset, 'hex')
  })
}

/** Dates as one `timestamptz[]` parameter (to the millisecond, as a Date holds them); an invalid Date is refused. */
export function timestamptzArrayParam(values: readonly Date[]): Buffer {
  return fixedWidthArrayParam(values, TIMESTAMPTZ_OID, 8, (buffer, offset, value) => {
    const ms = value.getTime()
    if (!Number.isFinite(ms)) throw new RangeError('not a valid date')
    buffer.writeBigInt64BE(BigInt(ms - POSTGRES_EPOCH_MS) * 1000n, offset)
  })
}
