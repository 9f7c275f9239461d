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

const encoder = new TextEncoder()

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
  const t = encoder.encode(tenant)
  const k = encoder.encode(key)
  const bytes = new Uint8Array(t.length + 1 + k.length)
  bytes.set(t, 0)
  bytes[t.length] = 0
  bytes.set(k, t.length + 1)
  return fnv1a32(bytes)
}

/** The partition of a stream, in `[0, partitions)`. */
export const partitionOf = (tenant: string, key: string, partitions: number): number =>
  hashStreamKey(tenant, key) % partitions
