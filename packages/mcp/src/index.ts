/**
 * `@chronos/mcp`: the MCP server of Chronos — tools, guides and prompts over the store, served over stdio and
 * Streamable HTTP. Start at `ChronosMcp`; `ChronosTool` is how more tools are added.
 */
export * as ChronosMcp from "./ChronosMcp.ts"
export * as ChronosTool from "./ChronosTool.ts"
export * as McpConfig from "./McpConfig.ts"
export * as McpSessions from "./McpSessions.ts"
export * as McpStore from "./McpStore.ts"
export * as TimeExpression from "./TimeExpression.ts"
export * as ToolError from "./ToolError.ts"
