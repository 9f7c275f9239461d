/**
 * Structural diff of two JSON values, for `compare_states`: one entry per leaf that was added, removed or changed,
 * named by its path (`balance`, `lines[2].qty`, `["odd key"]`), with the numeric delta where both sides are numbers.
 * Arrays compare by index (an event-sourced state's lists are usually append-only, so index is the natural key).
 * The walk stops counting details after `max` entries but still reports how many there were.
 */

export interface Change {
  readonly path: string
  readonly change: "added" | "removed" | "changed"
  readonly before?: unknown
  readonly after?: unknown
  /** `after - before` when both are numbers. */
  readonly delta?: number
}

export interface DiffResult {
  readonly changes: Array<Change>
  /** Changes found in all (may exceed `changes.length` when capped). */
  readonly total: number
}

const identifier = /^[A-Za-z_$][A-Za-z0-9_$]*$/

const child = (path: string, key: string) =>
  identifier.test(key) ? (path === "" ? key : `${path}.${key}`) : `${path}[${JSON.stringify(key)}]`

const isRecord = (u: unknown): u is Record<string, unknown> =>
  typeof u === "object" && u !== null && !Array.isArray(u)

export const diff = (before: unknown, after: unknown, max: number): DiffResult => {
  const changes: Array<Change> = []
  let total = 0
  const add = (change: Change) => {
    total++
    if (changes.length < max) changes.push(change)
  }
  const walk = (path: string, a: unknown, b: unknown): void => {
    if (isRecord(a) && isRecord(b)) {
      for (const key of Object.keys(a)) {
        if (!(key in b)) add({ path: child(path, key), change: "removed", before: a[key] })
        else walk(child(path, key), a[key], b[key])
      }
      for (const key of Object.keys(b)) {
        if (!(key in a)) add({ path: child(path, key), change: "added", after: b[key] })
      }
      return
    }
    if (Array.isArray(a) && Array.isArray(b)) {
      const n = Math.max(a.length, b.length)
      for (let i = 0; i < n; i++) {
        const p = `${path}[${i}]`
        if (i >= a.length) add({ path: p, change: "added", after: b[i] })
        else if (i >= b.length) add({ path: p, change: "removed", before: a[i] })
        else walk(p, a[i], b[i])
      }
      return
    }
    if (JSON.stringify(a) === JSON.stringify(b)) return
    const label = path === "" ? "(state)" : path
    add(
      typeof a === "number" && typeof b === "number"
        ? { path: label, change: "changed", before: a, after: b, delta: b - a }
        : { path: label, change: "changed", before: a, after: b }
    )
  }
  walk("", before, after)
  return { changes, total }
}
