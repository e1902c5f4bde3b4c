// Vectors as query parameters in pgvector's binary form, which both pg and PGlite send as binary for a Buffer:
// a copy and a byte swap, where text is a number conversion per component each way (BENCHMARKS.md, "Reading these results").

import { ARRAY_HEADER, writeArrayHeader } from './array-params.js'

/** Header of one vector: its dimension and a reserved zero, both int16. */
const VECTOR_HEADER = 4

function checkFinite(vector: ArrayLike<number>): void {
  for (let i = 0; i < vector.length; i++) {
    if (!Number.isFinite(vector[i])) throw new RangeError(`vector component ${i} is ${vector[i]}`)
  }
}

/** Writes `vector` at `offset` as pgvector's binary `vector` (big-endian float4); returns the offset after it. */
function writeVector(target: Buffer, offset: number, vector: ArrayLike<number>): number {
  checkFinite(vector)
  target.writeInt16BE(vector.length, offset)
  target.writeInt16BE(0, offset + 2)
  const start = offset + VECTOR_HEADER
  const end = start + vector.length * 4
  // Native order into the buffer, then one swap to network order: far cheaper than a writeFloatBE per component.
  const floats = new Float32Array(target.buffer, target.byteOffset + start, vector.length)
  floats.set(vector)
  if (LITTLE_ENDIAN) target.subarray(start, end).swap32()
  return end
}

const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1

/** Allocates with the float section 4-byte aligned (a Float32Array view needs it): Buffer.allocUnsafe may share a pool at any offset. */
function alignedBuffer(size: number): Buffer {
  return Buffer.from(new ArrayBuffer(size))
}

/** One vector as a parameter: `$n::vector` (or `$n::vector(384)`) reads it. */
export function vectorParam(vector: ArrayLike<number>): Buffer {
  const buffer = alignedBuffer(VECTOR_HEADER + vector.length * 4)
  writeVector(buffer, 0, vector)
  return buffer
}

/**
 * Vectors, or NULLs, as one `vector[]` parameter: `unnest($n::vector[])` reads them. The binary array names its
 * element type by oid, which the vector extension got when it was created in this database (see vectorTypeOid).
 */
export function vectorArrayParam(vectors: ReadonlyArray<ArrayLike<number> | null | undefined>, vectorOid: number): Buffer {
  let size = ARRAY_HEADER
  for (const vector of vectors) size += 4 + (vector ? VECTOR_HEADER + vector.length * 4 : 0)
  const buffer = alignedBuffer(size)
  writeArrayHeader(buffer, vectors.length, vectorOid, vectors.some((vector) => vector == null))
  let offset = ARRAY_HEADER
  for (const vector of vectors) {
    if (!vector) {
      buffer.writeInt32BE(-1, offset)
      offset += 4
      continue
    }
    // Each element: its length, then the vector; 4 + 4 + 4n keeps every float section 4-byte aligned.
    buffer.writeInt32BE(VECTOR_HEADER + vector.length * 4, offset)
    offset = writeVector(buffer, offset + 4, vector)
  }
  return buffer
}

/** The oid of the `vector` type in the database `query` reaches (the extension must exist: migrations create it). */
export async function vectorTypeOid(query: (sql: string) => Promise<{ rows: Array<Record<string, unknown>> }>): Promise<number> {
  const { rows } = await query("SELECT 'vector'::regtype::oid::int8 AS oid")
  const oid = Number(rows[0]?.oid)
  if (!Number.isInteger(oid) || oid <= 0) throw new Error('the vector type was not found; has the vector extension been created?')
  return oid
}
