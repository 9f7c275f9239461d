/** The Chronos client SDK: `ChronosClient` over HTTP, embedded over a data directory, or in memory for tests. */
export * from "./ChronosClient.ts"
