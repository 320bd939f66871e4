/**
 * The OTLP exporter for a signal and protocol: gRPC, HTTP/protobuf or HTTP/JSON, the same classes NodeSDK
 * would pick from OTEL_EXPORTER_OTLP_*_PROTOCOL. They are built here rather than by NodeSDK because the sink
 * wraps them to count what they deliver and what they fail to (trace-pipeline.ts, metrics.ts).
 *
 * Only what an option fixes is passed in: the URL when --otlp gave one, and kvm-trace's default request
 * timeout. Everything else — endpoint and headers from OTEL_EXPORTER_OTLP_[SIGNAL_]*, compression, TLS
 * certificates, a timeout set there — the exporters read from the environment themselves.
 *
 * Why a default timeout of our own: the SDK's is 10 s, retries included. A capture's close waits only
 * --otlp-flush-timeout for the collector; a request still retrying after that keeps the process alive until
 * its timeout, so an unreachable collector would hold `kvm-trace demo` up for seconds after its summary.
 */
import { OTLPMetricExporter as GrpcMetricExporter } from '@opentelemetry/exporter-metrics-otlp-grpc';
import { OTLPMetricExporter as JsonMetricExporter } from '@opentelemetry/exporter-metrics-otlp-http';
import { OTLPMetricExporter as ProtoMetricExporter } from '@opentelemetry/exporter-metrics-otlp-proto';
import { OTLPTraceExporter as GrpcTraceExporter } from '@opentelemetry/exporter-trace-otlp-grpc';
import { OTLPTraceExporter as JsonTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { OTLPTraceExporter as ProtoTraceExporter } from '@opentelemetry/exporter-trace-otlp-proto';
import type { PushMetricExporter } from '@opentelemetry/sdk-metrics';
import type { SpanExporter } from '@opentelemetry/sdk-trace';
import type { SignalTarget } from './options.js';

type Signal = 'traces' | 'metrics';

/** `timeoutMillis` unless OTEL_EXPORTER_OTLP_[SIGNAL_]TIMEOUT sets one (then the exporter reads it). */
function timeout(signal: Signal, ms: number): { timeoutMillis?: number } {
  const env = process.env;
  const set = env[`OTEL_EXPORTER_OTLP_${signal.toUpperCase()}_TIMEOUT`]?.trim() || env.OTEL_EXPORTER_OTLP_TIMEOUT?.trim();
  return set ? {} : { timeoutMillis: ms };
}

/**
 * A span exporter. `concurrencyLimit`: at close the batch processor sends every queued batch at once, and the
 * exporter fails requests beyond its limit with "Concurrent export limit reached".
 */
export function spanExporter(t: SignalTarget, timeoutMs: number, concurrencyLimit: number): SpanExporter {
  const cfg = { ...(t.url ? { url: t.url } : {}), ...timeout('traces', timeoutMs), concurrencyLimit };
  switch (t.protocol) {
    case 'grpc':
      return new GrpcTraceExporter(cfg);
    case 'http/json':
      return new JsonTraceExporter(cfg);
    default:
      return new ProtoTraceExporter(cfg);
  }
}

export function metricExporter(t: SignalTarget, timeoutMs: number): PushMetricExporter {
  const cfg = { ...(t.url ? { url: t.url } : {}), ...timeout('metrics', timeoutMs) };
  switch (t.protocol) {
    case 'grpc':
      return new GrpcMetricExporter(cfg);
    case 'http/json':
      return new JsonMetricExporter(cfg);
    default:
      return new ProtoMetricExporter(cfg);
  }
}

/** Where the exporter sends to, for warnings (the exporter itself resolves an endpoint from the environment). */
export function targetLabel(t: SignalTarget, signal: Signal): string {
  return t.url ?? `the ${signal} endpoint from OTEL_EXPORTER_OTLP_* (${t.protocol})`;
}
