/**
 * What a Chronos MCP tool is, and how tools are registered with the `McpServer` of `effect/ai`. This module owns the
 * contract every tool shares, so that a new tool (search, forks, …) is added by defining it and passing it to
 * `register`, and gets the same behaviour for free:
 *
 *  - arguments decoded with the tool's Schema, strictly: an unknown argument (a typo such as `type` for `types`) is an
 *    error naming the accepted ones, never silently ignored;
 *  - annotations (`readOnlyHint`, `destructiveHint`, `idempotentHint`, `openWorldHint`) and an `outputSchema`
 *    derived from the tool's output Schema, with `structuredContent` on every success;
 *  - a text rendering chosen by the tool (compact lines, not escaped JSON) alongside the structured copy;
 *  - the session (tenant, last read) of the calling MCP session;
 *  - failures as tool results with `isError: true` and an actionable message (`ToolError`); argument errors too,
 *    since the model can fix them (MCP 2025-11-25 asks for exactly that). Defects are logged and reported as an
 *    internal error without their stack.
 *
 * Registration uses `McpServer.addTool` directly rather than `McpServer.toolkit`: the toolkit path renders every
 * result as `JSON.stringify(result)`, which would defeat the compact format, and cannot read the session.
 */
import { Cause, Clock, Context, Effect, Exit, Layer, Schema } from "effect"
import { McpSchema, McpServer, Tool } from "effect/ai"
import { HttpServerRequest } from "effect/http"
import { Forks } from "@chronos/engine/Forks"
import { McpConfig, type McpConfigShape } from "./McpConfig.ts"
import { McpSessions, type Session } from "./McpSessions.ts"
import { McpStore, type McpStoreShape } from "./McpStore.ts"
import { forkNotFound, fromDomain, type ToolError, toolError } from "./ToolError.ts"

/** What a tool's handler gets besides its arguments. */
export interface ToolContext {
  /** The store (the engine, or a node through the client SDK). */
  readonly engine: McpStoreShape
  /**
   * The store as seen from a fork of `tenant` (its parent up to the base plus its own events; writes go to the
   * fork), or the store itself when `fork` is undefined. Fails with advice when the fork does not exist or the
   * server has no forks (a node reached over `--url`).
   */
  readonly storeFor: (tenant: string, fork: string | undefined) => Effect.Effect<McpStoreShape, ToolError>
  readonly config: McpConfigShape
  /** The Clock's time when the call started: every phrase in the call resolves against this one instant. */
  readonly now: number
  readonly session: Session
  /** The tenant of the call: the argument, else the session's, else `config.defaultTenant`. */
  readonly tenantOf: (argument: string | undefined) => string
  /** Updates what the session remembers. */
  readonly remember: (f: (session: Session) => Session) => Effect.Effect<void>
}

/** A successful result: the structured value (matching the tool's output schema) and its text for the model. */
export interface ToolOutput<S> {
  readonly structured: S
  readonly text: string
}

export interface Hints {
  /** Reads only: the tool never changes the store. */
  readonly readOnly: boolean
  /** May overwrite or delete (meaningful only when not read-only). Chronos is append-only, so rarely true. */
  readonly destructive: boolean
  /** Repeating the call with the same arguments has no further effect. */
  readonly idempotent: boolean
  /** Talks to systems outside the store (search models, other nodes). */
  readonly openWorld?: boolean | undefined
}

export interface ChronosTool<P, S, R = never> {
  readonly name: string
  readonly title: string
  /** Shown to the model: when to use the tool, when not, patterns, traps, what errors mean. */
  readonly description: string
  readonly parameters: Schema.Decoder<P>
  readonly output: Schema.Top
  readonly hints: Hints
  readonly run: (params: P, context: ToolContext) => Effect.Effect<ToolOutput<S>, ToolError, R>
}

// oxlint-disable-next-line no-explicit-any
export type Any = ChronosTool<any, any, any>

/** Identity, with inference: `ChronosTool.make({ name, …, run })`. */
export const make = <P, S, R = never>(tool: ChronosTool<P, S, R>): ChronosTool<P, S, R> => tool

/** The services the handlers of `tools` need besides the standard ones. */
export type Requirements<Tools extends ReadonlyArray<Any>> = Tools[number] extends ChronosTool<any, any, infer R> ? R
  : never

/** The MCP session a request belongs to: `Mcp-Session-Id` over HTTP, the connection over stdio. */
const sessionKey = Effect.gen(function*() {
  const context = yield* McpSchema.McpRequestContext
  const request = yield* Effect.serviceOption(HttpServerRequest.HttpServerRequest)
  if (request._tag === "None") return `connection:${context.clientId}`
  const id = request.value.headers["mcp-session-id"]
  // Sessionless HTTP requests have nothing to remember across calls; each is its own short-lived session.
  return id === undefined || id === "" ? `request:${context.clientId}` : `session:${id}`
})

const text = (message: string) => McpSchema.TextContent.make({ text: message })

const errorResult = (message: string) => new McpSchema.CallToolResult({ isError: true, content: [text(message)] })

/** `Expected … at ["limit"]` → one line per issue, plus the accepted arguments when one was unknown. */
const argumentError = (tool: Any, error: Schema.SchemaError): ToolError => {
  const accepted = Object.keys(jsonSchemaOf(tool.parameters).properties ?? {})
  const unknown = /excess property/i.test(error.message)
  return toolError(
    "InvalidArguments",
    `invalid arguments for ${tool.name}: ${error.message.replace(/\n\s*/g, " ")}` +
      (unknown ? `. Accepted arguments: ${accepted.join(", ")}.` : "")
  )
}

interface ObjectJsonSchema {
  readonly type: "object"
  readonly properties?: Record<string, unknown>
  readonly [key: string]: unknown
}

const jsonSchemaOf = (schema: Schema.Top | Schema.Decoder<unknown>): ObjectJsonSchema =>
  terse(Tool.getJsonSchemaFromSchema(schema as Schema.Top)) as ObjectJsonSchema

/**
 * A JSON Schema without what says nothing: the ±2^53 bounds of every integer and `additionalProperties: true` (the
 * default). Every client sends the tool list to its model on each turn, so these bytes are paid again and again.
 */
const terse = (schema: unknown): unknown => {
  if (Array.isArray(schema)) return schema.map(terse)
  if (typeof schema !== "object" || schema === null) return schema
  const out: Record<string, unknown> = {}
  for (const [key, value] of Object.entries(schema)) {
    if ((key === "minimum" && value === Number.MIN_SAFE_INTEGER) || (key === "maximum" && value === Number.MAX_SAFE_INTEGER)) continue
    if (key === "additionalProperties" && value === true) continue
    out[key] = terse(value)
  }
  return out
}

/** The `tools/list` entry of a tool. */
export const describe = (tool: Any): McpSchema.Tool =>
  new McpSchema.Tool({
    name: tool.name,
    title: tool.title,
    description: tool.description,
    // Arguments are decoded strictly, so the schema says so: a client that validates before sending agrees.
    inputSchema: { ...jsonSchemaOf(tool.parameters), additionalProperties: false } as McpSchema.ToolJson,
    outputSchema: jsonSchemaOf(tool.output),
    annotations: McpSchema.ToolAnnotations.make({
      title: tool.title,
      readOnlyHint: tool.hints.readOnly,
      destructiveHint: tool.hints.destructive,
      idempotentHint: tool.hints.idempotent,
      openWorldHint: tool.hints.openWorld ?? false
    })
  })

/**
 * Registers `tools` (or the tools built from the MCP configuration) with the `McpServer`. The layer needs the
 * store, the MCP configuration and sessions, and whatever the tools' handlers need (e.g. a search or forks service).
 */
export const register = <const Tools extends ReadonlyArray<Any>>(
  tools: Tools | ((config: McpConfigShape) => Tools)
): Layer.Layer<never, never, McpServer.McpServer | McpStore | McpConfig | McpSessions | Requirements<Tools>> =>
  Layer.effectDiscard(Effect.gen(function*() {
    const server = yield* McpServer.McpServer
    const engine = yield* McpStore
    const config = yield* McpConfig
    const sessions = yield* McpSessions
    // Forks exist where the engine runs in this process (a node, embedded mode); a remote store has none.
    const forks = yield* Effect.serviceOption(Forks)
    const storeFor = (tenant: string, fork: string | undefined): Effect.Effect<McpStoreShape, ToolError> => {
      if (fork === undefined || fork === "") return Effect.succeed(engine)
      if (forks._tag === "None") {
        return Effect.fail(toolError("ForksUnavailable", "this server has no forks (it reaches its store over HTTP); " +
          "leave out fork, and use append_events with dryRun to try a change"))
      }
      return forks.value.engine(tenant, fork).pipe(
        Effect.map((forkEngine): McpStoreShape => forkEngine),
        Effect.mapError((e) => e._tag === "ForkNotFound" ? forkNotFound(tenant, fork) : fromDomain(e))
      )
    }
    // The handlers' own services, captured here: an MCP handler runs in the request's context, not the layer's.
    const services = yield* Effect.context<Requirements<Tools>>()
    // Tools built from the configuration show its limits in their schemas and descriptions.
    for (const tool of typeof tools === "function" ? tools(config) : tools) {
      const decode = Schema.decodeUnknownExit(tool.parameters as Schema.Decoder<unknown>)
      const handle = (payload: unknown) =>
        Effect.gen(function*() {
          const decoded = decode(payload ?? {}, { onExcessProperty: "error", errors: "all" })
          if (Exit.isFailure(decoded)) {
            const failure = Cause.findErrorOption(decoded.cause)
            return failure._tag === "Some" && Schema.isSchemaError(failure.value)
              ? errorResult(argumentError(tool, failure.value).message)
              : errorResult(`invalid arguments for ${tool.name}`)
          }
          const key = yield* sessionKey
          const session = yield* sessions.get(key)
          const now = yield* Clock.currentTimeMillis
          const context: ToolContext = {
            engine,
            storeFor,
            config,
            now,
            session,
            tenantOf: (argument) => argument ?? session.tenant ?? config.defaultTenant,
            remember: (f) => sessions.update(key, f)
          }
          const exit = yield* Effect.exit(Effect.provideContext(tool.run(decoded.value, context), services))
          if (Exit.isSuccess(exit)) {
            return new McpSchema.CallToolResult({
              content: [text(exit.value.text)],
              structuredContent: exit.value.structured
            })
          }
          const error = Cause.findErrorOption(exit.cause)
          if (error._tag === "Some") return errorResult(error.value.message)
          if (Cause.hasInterruptsOnly(exit.cause)) return yield* Effect.interrupt
          yield* Effect.logError(`tool ${tool.name} failed`, exit.cause)
          return errorResult(
            `internal error in ${tool.name} (a bug in the Chronos MCP server, not in your call): ` +
              Cause.squash(exit.cause)
          )
        })
      yield* server.addTool({ tool: describe(tool), annotations: Context.empty(), handle })
    }
  }))
