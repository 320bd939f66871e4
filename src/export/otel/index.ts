/**
 * OpenTelemetry export of kvm-trace records: spans (one trace per VM), metrics over OTLP (gRPC or HTTP) and a
 * Prometheus scrape endpoint, set up through NodeSDK. The one public entry of src/export/otel/.
 */
export { createOtelSink, openOtelSink, exportRecords } from './sink.js';
export type { OtelSink, OtelStats, OtelEndpoints, OtelSinkInternals } from './sink.js';
export { OTEL_FLAGS, otelOptionsFrom, otelSummaryLine } from './flags.js';
export type { OtelCliValues, OtelFlag } from './flags.js';
export { OtelOptionError, resolveOtelConfig, signalUrl } from './options.js';
export type { OtelSinkOptions, OtlpProtocol, RunSpanMode, RunSpanOptions, ResolvedOtelConfig, SignalTarget } from './options.js';
export { MonotonicToEpoch, readClockPair } from './clock.js';
export type { ClockPair } from './clock.js';
