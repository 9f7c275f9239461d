/**
 * UUID v4 from the `Random` service (deterministic under a seeded `Random` in tests; no `Math.random` here).
 * The format is the one `Ids.EventId` accepts: 122 random bits, version nibble 4, variant bits 10.
 */
import type { Random } from "effect"

const hex8 = (n: number) => (n >>> 0).toString(16).padStart(8, "0")

/** 32 random bits from the top of a double in [0, 1) (the best-distributed bits of common generators). */
const word = (random: Random.Random) => Math.floor(random.nextDoubleUnsafe() * 0x1_0000_0000)

export const uuidV4 = (random: Random.Random): string => {
  const a = hex8(word(random))
  const b = hex8((word(random) & 0xffff0fff) | 0x00004000)
  const c = hex8((word(random) & 0x3fffffff) | 0x80000000)
  const d = hex8(word(random))
  return `${a}-${b.slice(0, 4)}-${b.slice(4)}-${c.slice(0, 4)}-${c.slice(4)}${d}`
}
