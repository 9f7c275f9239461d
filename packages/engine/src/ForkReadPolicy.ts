/**
 * What a fork's reads must apply on top of the fork's own events: the store's read rules (retention and deletions,
 * implemented by `@chronos/storage/Retention`). A fork reads the store's events up to its base, so what the store
 * hides must stay hidden there — through every surface that opens a fork engine (HTTP `?fork=`, MCP tools with
 * `fork`, search with a fork filter), not only the one that remembered to wrap it.
 *
 * `Forks` applies the policy once per opened fork when the service is provided (the engine package knows nothing of
 * the rules themselves); without it, fork reads show everything the fork sees (a store with no retention).
 */
import { Context } from "effect"
import type { EngineShape } from "./Engine.ts"

export interface ForkReadPolicyShape {
  /** The engine `fork` reads through, given the store it was forked from (whose rules apply). */
  readonly wrap: (fork: EngineShape, store: EngineShape) => EngineShape
}

export class ForkReadPolicy extends Context.Service<ForkReadPolicy, ForkReadPolicyShape>()(
  "chronos/engine/ForkReadPolicy"
) {}
