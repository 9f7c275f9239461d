/**
 * Multi-turn memory of the MCP surface: per MCP session, the tenant in use and the last read (its filters and where
 * it stopped), so that "next page", "refine" and "same but since yesterday" work without the model repeating
 * everything. This module owns the session table and its bounds: at most `sessionsMax` sessions (the least recently
 * used is forgotten first) and an idle TTL (`sessionIdleMs`), both enforced on every access, so no timer or
 * background fiber is needed.
 *
 * A session is keyed by the `Mcp-Session-Id` header over Streamable HTTP, and by the connection over stdio (one
 * process serves one client). Nothing here is durable: forgetting a session only costs the model a repeated filter.
 */
import { Clock, Context, Effect, Layer } from "effect"
import { McpConfig } from "./McpConfig.ts"

/** The filters of a `query_events` call as the model wrote them (phrases unresolved, so `refine` re-reads them). */
export interface QueryFilters {
  readonly types?: ReadonlyArray<string> | undefined
  readonly time?: string | undefined
  readonly since?: string | undefined
  readonly until?: string | undefined
  readonly asOf?: string | undefined
  readonly stream?: string | undefined
  readonly metadata?: Readonly<Record<string, string>> | undefined
}

/** How results are shown, remembered with the read so the next page looks like the first. */
export interface OutputOptions {
  readonly format: "compact" | "json"
  readonly limit: number
  readonly withMetadata: boolean
}

/** The last read of a session, with everything `next_page` needs to continue it exactly. */
export type LastRead =
  | {
    readonly _tag: "Query"
    readonly fork: string | undefined
    readonly filters: QueryFilters
    /** The filters with their times resolved when the query first ran: pages never shift with the clock. */
    readonly resolved: { readonly since?: number | undefined; readonly until?: number | undefined; readonly asOf?: string | undefined }
    readonly output: OutputOptions
    /** The store cursor after the last event returned (or examined); absent when the query reached the end. */
    readonly next: string | undefined
  }
  | {
    readonly _tag: "Stream"
    readonly fork: string | undefined
    readonly stream: string
    readonly direction: "forward" | "backward"
    readonly asOf: string | undefined
    readonly output: OutputOptions
    /** The version to continue from; absent when the read reached the end of the stream. */
    readonly nextVersion: number | undefined
  }

export interface Session {
  readonly tenant: string | undefined
  readonly last: LastRead | undefined
}

interface Entry {
  session: Session
  touchedMs: number
}

export interface McpSessionsShape {
  /** The session under `key` (a fresh one when unknown or expired). */
  readonly get: (key: string) => Effect.Effect<Session>
  /** Replaces what the session remembers (creating it when needed). */
  readonly update: (key: string, f: (session: Session) => Session) => Effect.Effect<void>
  /** Sessions held now (after expiring idle ones). */
  readonly size: Effect.Effect<number>
}

const empty: Session = { tenant: undefined, last: undefined }

export class McpSessions extends Context.Service<McpSessions, McpSessionsShape>()("chronos/mcp/McpSessions") {
  static readonly layer: Layer.Layer<McpSessions, never, McpConfig> = Layer.effect(
    McpSessions,
    Effect.gen(function*() {
      const config = yield* McpConfig
      return make(config.sessionsMax, config.sessionIdleMs)
    })
  )
}

export const make = (sessionsMax: number, sessionIdleMs: number): McpSessionsShape => {
  // A Map iterates in insertion order; re-inserting on every touch keeps the least recently used first, so both
  // the idle sweep and the LRU eviction only ever look at the front.
  const sessions = new Map<string, Entry>()

  const sweep = (now: number) => {
    for (const [key, entry] of sessions) {
      if (now - entry.touchedMs < sessionIdleMs) break
      sessions.delete(key)
    }
  }

  const touch = (key: string, now: number): Entry => {
    sweep(now)
    let entry = sessions.get(key)
    if (entry !== undefined) sessions.delete(key)
    else entry = { session: empty, touchedMs: now }
    entry.touchedMs = now
    sessions.set(key, entry)
    while (sessions.size > sessionsMax) {
      const oldest = sessions.keys().next().value
      if (oldest === undefined) break
      sessions.delete(oldest)
    }
    return entry
  }

  return {
    get: (key) => Effect.map(Clock.currentTimeMillis, (now) => touch(key, now).session),
    update: (key, f) =>
      Effect.map(Clock.currentTimeMillis, (now) => {
        const entry = touch(key, now)
        entry.session = f(entry.session)
      }),
    size: Effect.map(Clock.currentTimeMillis, (now) => {
      sweep(now)
      return sessions.size
    })
  }
}
