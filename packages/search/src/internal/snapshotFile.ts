/**
 * The on-disk form of an index snapshot: a JSON header plus named typed arrays, checksummed, written atomically.
 *
 *     "CHSNAP01" | u32 header bytes | header JSON | (pad to 8) | array bytes … | u32 CRC32 of everything before it
 *
 * The header lists each array's name, element type and length. Writes go to a temporary file that is fsynced and
 * renamed over the old one, so a crash leaves either the previous snapshot or the new one, never a torn file; a file
 * whose checksum does not match is reported as corrupt and the caller rebuilds from the log.
 */
import * as fs from "node:fs/promises"
import * as DurableFile from "@chronos/engine/DurableFile"
import * as zlib from "node:zlib"

const magic = Buffer.from("CHSNAP01", "latin1")

export type TypedArray = Int32Array | Int8Array | Uint8Array | Float32Array | Float64Array

const constructors = { Int32Array, Int8Array, Uint8Array, Float32Array, Float64Array } as const
type ArrayKind = keyof typeof constructors

export interface Snapshot {
  readonly header: unknown
  readonly arrays: Readonly<Record<string, TypedArray>>
}

const kindOf = (a: TypedArray): ArrayKind =>
  a instanceof Int32Array
    ? "Int32Array"
    : a instanceof Int8Array
    ? "Int8Array"
    : a instanceof Uint8Array
    ? "Uint8Array"
    : a instanceof Float32Array
    ? "Float32Array"
    : "Float64Array"

const pad8 = (n: number) => (8 - (n % 8)) % 8

export const encode = (snapshot: Snapshot): Buffer => {
  const entries = Object.entries(snapshot.arrays)
  const headerJson = Buffer.from(JSON.stringify({
    header: snapshot.header,
    arrays: entries.map(([name, a]) => ({ name, kind: kindOf(a), length: a.length }))
  }))
  const parts: Array<Buffer> = [magic, Buffer.alloc(4), headerJson]
  parts[1]!.writeUInt32LE(headerJson.length)
  let offset = magic.length + 4 + headerJson.length
  const padding = pad8(offset)
  parts.push(Buffer.alloc(padding))
  offset += padding
  for (const [, a] of entries) {
    parts.push(Buffer.from(a.buffer, a.byteOffset, a.byteLength))
    const p = pad8(a.byteLength)
    if (p > 0) parts.push(Buffer.alloc(p))
  }
  const body = Buffer.concat(parts)
  const crc = Buffer.alloc(4)
  crc.writeUInt32LE(zlib.crc32(body))
  return Buffer.concat([body, crc])
}

export class CorruptSnapshot extends Error {}

export const decode = (file: Buffer): Snapshot => {
  if (file.length < magic.length + 8 || !file.subarray(0, magic.length).equals(magic)) {
    throw new CorruptSnapshot("not a Chronos search snapshot")
  }
  const body = file.subarray(0, file.length - 4)
  if (zlib.crc32(body) !== file.readUInt32LE(file.length - 4)) throw new CorruptSnapshot("checksum mismatch")
  const headerBytes = body.readUInt32LE(magic.length)
  let offset = magic.length + 4
  const parsed = JSON.parse(body.subarray(offset, offset + headerBytes).toString()) as {
    header: unknown
    arrays: Array<{ name: string; kind: ArrayKind; length: number }>
  }
  offset += headerBytes
  offset += pad8(offset)
  const arrays: Record<string, TypedArray> = {}
  for (const { kind, length, name } of parsed.arrays) {
    const C = constructors[kind]
    if (C === undefined) throw new CorruptSnapshot(`unknown array kind ${kind}`)
    const bytes = length * C.BYTES_PER_ELEMENT
    if (offset + bytes > body.length) throw new CorruptSnapshot(`array ${name} runs past the end`)
    // Copied into its own buffer: the file buffer's offsets are not aligned for every element type.
    const copy = new Uint8Array(bytes)
    copy.set(body.subarray(offset, offset + bytes))
    arrays[name] = new C(copy.buffer, 0, length)
    offset += bytes + pad8(bytes)
  }
  return { header: parsed.header, arrays }
}

/** Writes `data` to `file` atomically (temporary file, fsync, rename, fsync of the directory). */
export const writeAtomic = DurableFile.writeAtomic

/** The file's bytes, or undefined when it does not exist. */
export const readIfExists = async (file: string): Promise<Buffer | undefined> => {
  try {
    return await fs.readFile(file)
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return undefined
    throw e
  }
}
