/**
 * Which partition owns a stream. The hash is part of the storage format: every node, client and language must
 * compute the same partition, forever, so it is spelled out here and pinned by test vectors.
 *
 *   partition = fnv1a32(utf8(tenant) ++ [0x00] ++ utf8(partitionKey)) mod partitions
 *
 * FNV-1a 32-bit: offset basis 0x811c9dc5, prime 0x01000193, over bytes, as an unsigned 32-bit integer.
 * The partition key is the stream id unless the caller names another one (streams sharing a key share a partition,
 * so they can later be appended atomically together).
 */

/** FNV-1a, 32-bit, over the given bytes. */
export const fnv1a32 = (bytes: Uint8Array, seed = 0x811c9dc5): number => {
  let hash = seed
  for (let i = 0; i < bytes.length; i++) {
    hash ^= bytes[i]!
    hash = Math.imul(hash, 0x01000193)
  }
  return hash >>> 0
}

/** The 32-bit hash of `(tenant, key)` as defined above. */
export const hashStreamKey = (tenant: string, key: string): number => {
  // Hashes the UTF-8 bytes without materializing them: this runs on every append.
  let hash = fnv1a32String(tenant, 0x811c9dc5)
  hash = Math.imul(hash ^ 0, 0x01000193) >>> 0
  return fnv1a32String(key, hash)
}

/** FNV-1a over the UTF-8 encoding of `text`, continuing from `seed`. */
const fnv1a32String = (text: string, seed: number): number => {
  let hash = seed
  for (let i = 0; i < text.length; i++) {
    let c = text.charCodeAt(i)
    if (c < 0x80) {
      hash = Math.imul(hash ^ c, 0x01000193)
      continue
    }
    if (c >= 0xd800 && c <= 0xdbff && i + 1 < text.length) {
      const low = text.charCodeAt(i + 1)
      if (low >= 0xdc00 && low <= 0xdfff) {
        i++
        c = 0x10000 + ((c - 0xd800) << 10) + (low - 0xdc00)
      }
    }
    if (c >= 0xd800 && c <= 0xdfff) c = 0xfffd // a lone surrogate encodes as U+FFFD, like TextEncoder
    if (c < 0x800) {
      hash = Math.imul(hash ^ (0xc0 | (c >> 6)), 0x01000193)
    } else if (c < 0x10000) {
      hash = Math.imul(hash ^ (0xe0 | (c >> 12)), 0x01000193)
      hash = Math.imul(hash ^ (0x80 | ((c >> 6) & 0x3f)), 0x01000193)
    } else {
      hash = Math.imul(hash ^ (0xf0 | (c >> 18)), 0x01000193)
      hash = Math.imul(hash ^ (0x80 | ((c >> 12) & 0x3f)), 0x01000193)
      hash = Math.imul(hash ^ (0x80 | ((c >> 6) & 0x3f)), 0x01000193)
    }
    hash = Math.imul(hash ^ (0x80 | (c & 0x3f)), 0x01000193)
  }
  return hash >>> 0
}

/** The partition of a stream, in `[0, partitions)`. */
export const partitionOf = (tenant: string, key: string, partitions: number): number =>
  hashStreamKey(tenant, key) % partitions
