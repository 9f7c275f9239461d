import { describe, expect, it } from "vitest"
import { Partitioning } from "@chronos/domain"

// Vectors computed independently (a 5-line Python FNV-1a over tenant ++ 0x00 ++ key, UTF-8). They pin the storage
// format: if one changes, every existing store would route streams to the wrong partition.
const vectors: ReadonlyArray<readonly [string, string, number, number]> = [
  ["t", "order-1", 2105599353, 25],
  ["acme", "account:42", 2655854440, 8],
  ["acme", "user@example.com", 3218060883, 19],
  ["tenant-ü", "straße", 3383735704, 24],
  ["a", "", 723832900, 4]
]

describe("Partitioning", () => {
  it.each(vectors)("hash(%s, %s) = %i, partition %i of 32", (tenant, key, hash, partition) => {
    expect(Partitioning.hashStreamKey(tenant, key)).toBe(hash)
    expect(Partitioning.partitionOf(tenant, key, 32)).toBe(partition)
  })

  it("hashes strings exactly as the bytes of their UTF-8 encoding (emoji, CJK, lone surrogate)", () => {
    const encoder = new TextEncoder()
    for (const [t, k] of [["t", "😀-stream"], ["租户", "流"], ["x", "a\ud800b"]] as const) {
      const bytes = [...encoder.encode(t), 0, ...encoder.encode(k)]
      expect(Partitioning.hashStreamKey(t, k)).toBe(Partitioning.fnv1a32(new Uint8Array(bytes)))
    }
  })

  it("separates tenant and key (no concatenation collisions)", () => {
    expect(Partitioning.hashStreamKey("ab", "c")).not.toBe(Partitioning.hashStreamKey("a", "bc"))
  })

  it("spreads 10k streams evenly over 32 partitions (every partition within ±25% of the mean)", () => {
    const counts = new Array<number>(32).fill(0)
    for (let i = 0; i < 10_000; i++) counts[Partitioning.partitionOf("tenant", `stream-${i}`, 32)]!++
    for (const c of counts) expect(Math.abs(c - 10_000 / 32)).toBeLessThan(10_000 / 32 * 0.25)
  })
})
