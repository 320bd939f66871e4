/**
 * OpenTelemetry export of kvm-trace records: spans (one trace per VM), metrics over OTLP/HTTP and a
 * Prometheus scrape endpoint. The one public entry of src/export/otel/.
 */
export { createOtelSink, openOtelSink, exportRecords } from './sink.js';
export type { OtelSink, OtelStats, OtelEndpoints, OtelSinkInternals } from './sink.js';
export { addOtelOptions, otelOptionsFrom, otelSummaryLine } from './cli-options.js';
export type { OtelCliValues } from './cli-options.js';
export { resolveOtelConfig, signalUrl } from './config.js';
export type { OtelSinkOptions, OtlpProtocol, RunSpanMode, RunSpanOptions, ResolvedOtelConfig } from './config.js';
export { MonotonicToEpoch, readClockPair } from './clock.js';
export type { ClockPair } from './clock.js';
