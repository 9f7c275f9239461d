/** The Chronos HTTP server: the `ChronosApi` handlers, request validation, and a node as a runnable layer. */
export * as HttpApp from "./HttpApp.ts"
export * as HttpHandlers from "./HttpHandlers.ts"
export * as Node from "./Node.ts"
export * as RequestValidation from "./RequestValidation.ts"
