/**
 * The Node `http.Server` of a node, wrapped for `NodeHttpServer`: it owns two things Effect's server does not do
 * for us.
 *  - Draining at shutdown. Closing a Node server stops new connections and closes idle ones, but a keep-alive
 *    client that keeps sending is served until the graceful-shutdown timeout (20 s). Once draining, every response
 *    says `Connection: close`, so each client leaves after its in-flight request is answered.
 *  - The direct path (`directPath.ts`): plain appends and stream reads are answered before Effect's request
 *    handler sees them; everything else is emitted to it unchanged.
 */
import { NodeHttpServer } from "@effect/platform-node"
import { Effect, Layer } from "effect"
import { IncomingMessage, Server, ServerResponse } from "node:http"
import type { ChronosConfigShape } from "@chronos/config"
import { Engine } from "@chronos/engine/Engine"
import * as DirectPath from "./directPath.ts"

class ChronosServer extends Server {
  draining = false
  direct: DirectPath.DirectPath | undefined = undefined

  // Node's HTTP parser delivers each request with `emit("request", req, res)`; Effect's handler is a listener.
  override emit(event: string, ...args: Array<unknown>): boolean {
    if (event === "request") {
      const response = args[1] as ServerResponse
      if (this.draining) response.shouldKeepAlive = false
      if (this.direct !== undefined && this.direct.handle(args[0] as IncomingMessage, response)) return true
    }
    return super.emit(event, ...args)
  }
}

export interface Options {
  /** Answer plain appends and stream reads directly (default true); false: every request goes through HttpApi. */
  readonly directPath?: boolean | undefined
}

export const make = (config: ChronosConfigShape, options: Options = {}) => {
  let server: ChronosServer | undefined
  const layer = Layer.unwrap(Effect.gen(function*() {
    const engine = yield* Engine
    const context = yield* Effect.context<never>()
    return NodeHttpServer.layer(() => {
      server = new ChronosServer({ IncomingMessage, ServerResponse })
      if (options.directPath !== false) server.direct = DirectPath.make(engine, config, context)
      return server
    }, { host: config.httpHost, port: config.httpPort })
  }))
  const drain = () => {
    if (server === undefined) return
    server.draining = true
    server.closeIdleConnections()
  }
  return { layer, drain }
}
