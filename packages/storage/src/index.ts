/**
 * The cold tier of Chronos: sealed ranges of each partition's log as immutable Parquet segments with a manifest
 * (plain files in embedded mode; NATS Object Store + KV in a cluster), verified reads and cold boot, sealing (online
 * policy and on demand, offline; the sealed tail compacted by retention), integrity scrubbing, retention enforced on
 * reads, compaction, and Parquet export/import.
 */
export * as ColdTier from "./ColdTier.ts"
export * as Manifest from "./Manifest.ts"
export * as SegmentFormat from "./SegmentFormat.ts"
export * as SegmentReader from "./SegmentReader.ts"
export * as SegmentStore from "./SegmentStore.ts"
export * as Sealer from "./Sealer.ts"
export * as Compact from "./Compact.ts"
export * as Embedded from "./Embedded.ts"
export * as Export from "./Export.ts"
export * as Import from "./Import.ts"
export * as Retention from "./Retention.ts"
export * as Seal from "./Seal.ts"
export * as Verify from "./Verify.ts"
