/**
 * Decoding raw kt_* records into the JSONL contract (records.ts): the decoder, its summary, sinks and the
 * live line formatter. See each module's header for the rules.
 */
export { Decoder, type DecoderOptions, type DecoderStats } from './decoder.js';
export { SummaryBuilder, type SummaryMeta } from './summary.js';
export { DurationHistogram, kernelQuantile, type HistogramJson } from './histogram.js';
export { JsonlSink, type JsonlSinkOptions, type JsonlSinkStats } from './jsonl-sink.js';
export { LineSink, formatRecord, formatIoctl, formatExit, formatDuration, type FormatOptions } from './format.js';
export { decodeStream } from './stream.js';
export { BtfArgsDecoder, type ArgsObject, type ArgValue, type StructDecoder } from './btf-args.js';
export { ExitDecoder } from './exit.js';
export { ProcessTable, classifyFdLink, parseKvmRunMaps, pidsWithKvmFds, type SeedResult, type FdInfo } from './processes.js';
export * from './records.js';
