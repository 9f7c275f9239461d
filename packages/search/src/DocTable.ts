/**
 * The documents of one index: for each indexed event, the attributes that filters need (partition, sequence, commit
 * time, type, stream) in columns, keyed by a dense document number that the index uses as its posting id or vector
 * label. It owns document numbering, per-stream removal, and the compilation of a `SearchFilter` into a predicate
 * over document numbers, so that every index filters the same way and inside its own ranking (no result is dropped
 * after the top-k was cut).
 *
 * Document numbers are never reused: a removed document stays as a dead row (`alive = 0`).
 * The indexes hold main's events only; a search through a fork (see `Search`) bounds them with `seqMax` (the
 * fork's view of main: its base, intersected along its branch chain) and ranks the fork's own events apart.
 */
import { AsOf } from "@chronos/domain"
import type { Event } from "@chronos/domain"
import type { TypedArray } from "./internal/snapshotFile.ts"

export interface SearchFilter {
  /** Only these event types (empty or absent: every type). */
  readonly types?: ReadonlyArray<string> | undefined
  /** Only streams whose id starts with this. */
  readonly streamPrefix?: string | undefined
  /** Only events committed at or after this instant (epoch ms). */
  readonly since?: number | undefined
  /** Only events committed at or before this instant (epoch ms). */
  readonly until?: number | undefined
  /** Only events visible at this point in time (see `AsOf`). */
  readonly asOf?: AsOf.AsOf | undefined
  /** Only events at or below `seqMax[partition]` (a fork's view of its root parent, main); absent: no bound. */
  readonly seqMax?: ReadonlyArray<number> | undefined
}

export const isEmptyFilter = (f: SearchFilter): boolean =>
  (f.types === undefined || f.types.length === 0) && f.streamPrefix === undefined && f.since === undefined &&
  f.until === undefined && f.asOf === undefined && f.seqMax === undefined

/** A growable column. */
class Column<A extends TypedArray> {
  data: A
  readonly make: (n: number) => A
  constructor(make: (n: number) => A, initial: A) {
    this.make = make
    this.data = initial
  }
  ensure(n: number) {
    if (n <= this.data.length) return
    const next = this.make(Math.max(n, this.data.length * 2, 1024))
    next.set(this.data as never)
    this.data = next
  }
}

export class DocTable {
  size = 0
  live = 0
  readonly partition = new Column((n) => new Int32Array(n), new Int32Array(0))
  readonly seq = new Column((n) => new Float64Array(n), new Float64Array(0))
  readonly timestamp = new Column((n) => new Float64Array(n), new Float64Array(0))
  readonly typeId = new Column((n) => new Int32Array(n), new Int32Array(0))
  readonly streamId = new Column((n) => new Int32Array(n), new Int32Array(0))
  readonly alive = new Column((n) => new Uint8Array(n), new Uint8Array(0))
  types: Array<string> = []
  typeIds = new Map<string, number>()
  streams: Array<string> = []
  streamIds = new Map<string, number>()
  /** Documents of each stream (by stream number), for `removeStream`. */
  streamDocs: Array<Array<number>> = []

  private intern(value: string, list: Array<string>, ids: Map<string, number>): number {
    let id = ids.get(value)
    if (id === undefined) {
      id = list.length
      list.push(value)
      ids.set(value, id)
    }
    return id
  }

  /** Appends a live document for `event`; returns its number. */
  add(event: Event.StoredEvent): number {
    const doc = this.size++
    for (const c of [this.partition, this.seq, this.timestamp, this.typeId, this.streamId, this.alive]) {
      c.ensure(this.size)
    }
    this.partition.data[doc] = event.partition
    this.seq.data[doc] = event.seq
    this.timestamp.data[doc] = event.timestamp
    this.typeId.data[doc] = this.intern(event.type, this.types, this.typeIds)
    const s = this.intern(event.stream, this.streams, this.streamIds)
    this.streamId.data[doc] = s
    ;(this.streamDocs[s] ??= []).push(doc)
    this.alive.data[doc] = 1
    this.live++
    return doc
  }

  /** Marks every live document of `stream` dead; returns their numbers. */
  removeStream(stream: string): Array<number> {
    const s = this.streamIds.get(stream)
    if (s === undefined) return []
    const removed: Array<number> = []
    for (const doc of this.streamDocs[s] ?? []) {
      if (this.alive.data[doc] === 1) {
        this.alive.data[doc] = 0
        this.live--
        removed.push(doc)
      }
    }
    this.streamDocs[s] = []
    return removed
  }

  isAlive(doc: number): boolean {
    return this.alive.data[doc] === 1
  }

  /**
   * The predicate "live and passes `filter`" over document numbers. Type and prefix tests are resolved once per
   * query into masks over the interned types and streams, so each document costs a few array reads.
   */
  compile(filter: SearchFilter): (doc: number) => boolean {
    const alive = this.alive.data
    if (isEmptyFilter(filter)) return (doc) => alive[doc] === 1
    let typeMask: Uint8Array | undefined
    if (filter.types !== undefined && filter.types.length > 0) {
      typeMask = new Uint8Array(this.types.length)
      for (const t of filter.types) {
        const id = this.typeIds.get(t)
        if (id !== undefined) typeMask[id] = 1
      }
    }
    let streamMask: Uint8Array | undefined
    const prefix = filter.streamPrefix
    if (prefix !== undefined && prefix !== "") {
      streamMask = new Uint8Array(this.streams.length)
      for (let s = 0; s < this.streams.length; s++) if (this.streams[s]!.startsWith(prefix)) streamMask[s] = 1
    }
    const since = filter.since ?? -Infinity
    const until = Math.min(filter.until ?? Infinity, AsOf.timeBound(filter.asOf))
    const positions = filter.asOf?._tag === "Positions" ? filter.asOf.positions : undefined
    const seqMax = filter.seqMax
    const typeId = this.typeId.data
    const streamId = this.streamId.data
    const timestamp = this.timestamp.data
    const partition = this.partition.data
    const seq = this.seq.data
    return (doc) => {
      if (alive[doc] !== 1) return false
      if (typeMask !== undefined && typeMask[typeId[doc]!] !== 1) return false
      if (streamMask !== undefined && streamMask[streamId[doc]!] !== 1) return false
      const t = timestamp[doc]!
      if (t < since || t > until) return false
      // A position vector sees, per listed partition, the events at or below its sequence; unlisted: nothing.
      if (positions !== undefined && !(seq[doc]! <= (positions.get(partition[doc]!) ?? 0))) return false
      if (seqMax !== undefined && !(seq[doc]! <= (seqMax[partition[doc]!] ?? 0))) return false
      return true
    }
  }

  /** How many live documents pass `accept`, stopping once `stopAbove` is exceeded (for strategy choices). */
  count(accept: (doc: number) => boolean, stopAbove: number): number {
    let n = 0
    for (let doc = 0; doc < this.size; doc++) {
      if (accept(doc) && ++n > stopAbove) return n
    }
    return n
  }

  /** The event position of a document. */
  position(doc: number): { readonly partition: number; readonly seq: number } {
    return { partition: this.partition.data[doc]!, seq: this.seq.data[doc]! }
  }

  toSnapshot(): { header: unknown; arrays: Record<string, TypedArray> } {
    const n = this.size
    return {
      header: { size: n, live: this.live, types: this.types, streams: this.streams },
      arrays: {
        "doc.partition": this.partition.data.subarray(0, n),
        "doc.seq": this.seq.data.subarray(0, n),
        "doc.timestamp": this.timestamp.data.subarray(0, n),
        "doc.typeId": this.typeId.data.subarray(0, n),
        "doc.streamId": this.streamId.data.subarray(0, n),
        "doc.alive": this.alive.data.subarray(0, n)
      }
    }
  }

  static fromSnapshot(header: unknown, arrays: Readonly<Record<string, TypedArray>>): DocTable {
    const h = header as { size: number; live: number; types: Array<string>; streams: Array<string> }
    const t = new DocTable()
    const get = <A extends TypedArray>(name: string, C: { new(n: number): A }): A => {
      const a = arrays[name]
      if (!(a instanceof C) || a.length !== h.size) throw new Error(`snapshot column ${name} is missing or mis-sized`)
      return a
    }
    t.size = h.size
    t.live = h.live
    t.partition.data = get("doc.partition", Int32Array)
    t.seq.data = get("doc.seq", Float64Array)
    t.timestamp.data = get("doc.timestamp", Float64Array)
    t.typeId.data = get("doc.typeId", Int32Array)
    t.streamId.data = get("doc.streamId", Int32Array)
    t.alive.data = get("doc.alive", Uint8Array)
    t.types = h.types
    t.typeIds = new Map(h.types.map((v, i) => [v, i]))
    t.streams = h.streams
    t.streamIds = new Map(h.streams.map((v, i) => [v, i]))
    t.streamDocs = h.streams.map(() => [])
    for (let doc = 0; doc < h.size; doc++) if (t.alive.data[doc] === 1) t.streamDocs[t.streamId.data[doc]!]!.push(doc)
    return t
  }
}
