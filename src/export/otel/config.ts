/**
 * Options of the OpenTelemetry sink and how they combine with the standard OTEL_* environment variables.
 * Explicit options win over the environment; the environment wins over defaults (the OTel SDK spec's order).
 *
 * Endpoints follow the OTLP/HTTP exporter spec: a base endpoint (`--otlp`, OTEL_EXPORTER_OTLP_ENDPOINT) gets
 * `/v1/traces` and `/v1/metrics` appended; the per-signal variables (OTEL_EXPORTER_OTLP_TRACES_ENDPOINT,
 * OTEL_EXPORTER_OTLP_METRICS_ENDPOINT) are used as given. A `--otlp` URL that already ends in `/v1/traces`
 * or `/v1/metrics` is taken as the traces URL, and the metrics URL is derived from it (and vice versa).
 * Only OTLP over HTTP is spoken (protobuf by default, JSON selectable); gRPC is refused with one clear line.
 */
export type OtlpProtocol = 'http/protobuf' | 'http/json';
export const OTLP_PROTOCOLS: readonly OtlpProtocol[] = ['http/protobuf', 'http/json'];

/**
 * What happens to KVM_RUN ioctls, which can arrive at 100 000/s per VM (one span each would cost more than the
 * capture itself):
 * - aggregate (default): one "KVM_RUN" span per vCPU per window of `windowMs` (record time). The window opens
 *   at the first KVM_RUN's enter time; the first KVM_RUN entering at or after openedAt + windowMs closes it and
 *   opens the next. A window is also closed by its vCPU fd's close/leak, by the idle timer (no KVM_RUN on
 *   that vCPU for windowMs of wall time) and by close(). The span runs from the first run's enter to the last
 *   run's exit and carries the count, errors, latency min/max/sum and exits by reason.
 * - sample: KVM_RUN number 1, 1+N, 1+2N, … of each vCPU (N = sampleEvery) gets its own span, and so does
 *   every KVM_RUN that failed (ret < 0); the rest are counted as sampled out.
 * - all: one span per KVM_RUN.
 * Every other ioctl always gets its own span.
 */
export type RunSpanMode = 'aggregate' | 'sample' | 'all';
export const RUN_SPAN_MODES: readonly RunSpanMode[] = ['aggregate', 'sample', 'all'];

export interface RunSpanOptions {
  mode: RunSpanMode;
  /** sample mode: one span every N runs per vCPU (default 100). */
  sampleEvery?: number;
  /** aggregate mode: window length in ms of record time (default 1000). */
  windowMs?: number;
}

export interface OtelSinkOptions {
  /** OTLP/HTTP base endpoint, e.g. http://localhost:4318 (or a full …/v1/traces URL). */
  endpoint?: string;
  /** Metrics URL used as given (default: derived from `endpoint` or the environment). */
  metricsEndpoint?: string;
  protocol?: OtlpProtocol;
  serviceName?: string;
  runSpans?: RunSpanOptions;
  /** Bound on close(): flush what is queued, then shut down, within this many ms (default 3000). */
  flushTimeoutMs?: number;
  /** One OTLP request, retries included (default max(1000, flushTimeoutMs)). */
  exportTimeoutMs?: number;
  /** Span queue bound; spans arriving at a full queue are dropped and counted (default 8192). */
  maxQueue?: number;
  /** Spans per OTLP request (default 512). */
  batchSize?: number;
  /** How long a span may wait in the queue before a batch is sent (default 1000 ms). */
  scheduleDelayMs?: number;
  /** Export spans (default true when an endpoint is configured). */
  traces?: boolean;
  /** Export metrics over OTLP (default true when an endpoint is configured). */
  metrics?: boolean;
  /** OTLP metric export interval (default OTEL_METRIC_EXPORT_INTERVAL or 10000 ms). */
  metricsIntervalMs?: number;
  /** Serve a Prometheus scrape endpoint (host default 127.0.0.1; port 0 = ephemeral). */
  prometheus?: { port: number; host?: string };
  /** Where the one-line warnings go (default: stderr). */
  warn?: (line: string) => void;
  /** Environment to read OTEL_* from (default process.env). */
  env?: NodeJS.ProcessEnv;
}

export interface ResolvedOtelConfig {
  tracesUrl?: string;
  metricsUrl?: string;
  tracesProtocol: OtlpProtocol;
  metricsProtocol: OtlpProtocol;
  serviceName: string;
  runSpans: Required<RunSpanOptions>;
  flushTimeoutMs: number;
  exportTimeoutMs: number;
  maxQueue: number;
  batchSize: number;
  scheduleDelayMs: number;
  metricsIntervalMs: number;
  prometheus?: { port: number; host: string };
}

export const DEFAULT_SERVICE_NAME = 'kvm-trace';
export const DEFAULT_FLUSH_TIMEOUT_MS = 3000;
export const DEFAULT_MAX_QUEUE = 8192;
export const DEFAULT_SAMPLE_EVERY = 100;
export const DEFAULT_WINDOW_MS = 1000;

type Signal = 'traces' | 'metrics';

/** `base` + `/v1/<signal>`, or a full signal URL re-pointed to the other signal. */
export function signalUrl(base: string, signal: Signal): string {
  let url: URL;
  try {
    url = new URL(base);
  } catch {
    throw new Error(`OTLP endpoint "${base}" is not a URL (expected e.g. http://localhost:4318)`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new Error(`OTLP endpoint "${base}" must be http:// or https:// (only OTLP/HTTP is supported)`);
  }
  const path = url.pathname.replace(/\/+$/, '');
  const known = /\/v1\/(traces|metrics|logs)$/.exec(path);
  url.pathname = known ? `${path.slice(0, known.index)}/v1/${signal}` : `${path}/v1/${signal}`;
  return url.toString();
}

function checkUrl(raw: string, what: string): string {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new Error(`${what} "${raw}" is not a URL`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new Error(`${what} "${raw}" must be http:// or https:// (only OTLP/HTTP is supported)`);
  }
  return url.toString();
}

function parseProtocol(raw: string | undefined, source: string): OtlpProtocol | undefined {
  if (raw === undefined || raw === '') return undefined;
  if ((OTLP_PROTOCOLS as readonly string[]).includes(raw)) return raw as OtlpProtocol;
  if (raw === 'grpc') throw new Error(`${source}=grpc is not supported: use http/protobuf or http/json`);
  throw new Error(`${source} "${raw}" is not one of ${OTLP_PROTOCOLS.join(', ')}`);
}

function positive(value: number | undefined, name: string, fallback: number, allowZero = false): number {
  if (value === undefined) return fallback;
  if (!Number.isFinite(value) || value < 0 || (!allowZero && value === 0) || !Number.isInteger(value)) {
    throw new Error(`${name} must be a ${allowZero ? 'non-negative' : 'positive'} integer, got ${value}`);
  }
  return value;
}

function envNumber(env: NodeJS.ProcessEnv, name: string): number | undefined {
  const raw = env[name];
  if (raw === undefined || raw.trim() === '') return undefined;
  const n = Number(raw);
  return Number.isFinite(n) && n > 0 ? Math.floor(n) : undefined;
}

/** Combine options, environment and defaults; throws one-line Errors for values that cannot work. */
export function resolveOtelConfig(opts: OtelSinkOptions = {}): ResolvedOtelConfig {
  const env = opts.env ?? process.env;
  const disabled = env.OTEL_SDK_DISABLED?.trim().toLowerCase() === 'true';
  const fromEnv = !disabled && opts.endpoint === undefined;

  let tracesUrl: string | undefined;
  let metricsUrl: string | undefined;
  if (opts.endpoint !== undefined) {
    tracesUrl = signalUrl(opts.endpoint, 'traces');
    metricsUrl = signalUrl(opts.endpoint, 'metrics');
  } else if (fromEnv) {
    const base = env.OTEL_EXPORTER_OTLP_ENDPOINT || undefined;
    const t = env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT || undefined;
    const m = env.OTEL_EXPORTER_OTLP_METRICS_ENDPOINT || undefined;
    tracesUrl = t ? checkUrl(t, 'OTEL_EXPORTER_OTLP_TRACES_ENDPOINT') : base ? signalUrl(base, 'traces') : undefined;
    metricsUrl = m ? checkUrl(m, 'OTEL_EXPORTER_OTLP_METRICS_ENDPOINT') : base ? signalUrl(base, 'metrics') : undefined;
  }
  if (opts.metricsEndpoint !== undefined) metricsUrl = checkUrl(opts.metricsEndpoint, 'metrics endpoint');
  if (opts.traces === false) tracesUrl = undefined;
  if (opts.metrics === false) metricsUrl = undefined;

  const common = parseProtocol(env.OTEL_EXPORTER_OTLP_PROTOCOL, 'OTEL_EXPORTER_OTLP_PROTOCOL');
  const explicit = parseProtocol(opts.protocol, 'OTLP protocol');
  const tracesProtocol =
    explicit ?? parseProtocol(env.OTEL_EXPORTER_OTLP_TRACES_PROTOCOL, 'OTEL_EXPORTER_OTLP_TRACES_PROTOCOL') ?? common ?? 'http/protobuf';
  const metricsProtocol =
    explicit ?? parseProtocol(env.OTEL_EXPORTER_OTLP_METRICS_PROTOCOL, 'OTEL_EXPORTER_OTLP_METRICS_PROTOCOL') ?? common ?? 'http/protobuf';

  const mode = opts.runSpans?.mode ?? 'aggregate';
  if (!RUN_SPAN_MODES.includes(mode)) {
    throw new Error(`run span mode "${mode}" is not one of ${RUN_SPAN_MODES.join(', ')}`);
  }
  const runSpans: Required<RunSpanOptions> = {
    mode,
    sampleEvery: positive(opts.runSpans?.sampleEvery, 'run sample interval', DEFAULT_SAMPLE_EVERY),
    windowMs: positive(opts.runSpans?.windowMs, 'run window (ms)', DEFAULT_WINDOW_MS),
  };

  const flushTimeoutMs = positive(opts.flushTimeoutMs, 'flush timeout (ms)', DEFAULT_FLUSH_TIMEOUT_MS);
  const maxQueue = positive(opts.maxQueue, 'span queue size', DEFAULT_MAX_QUEUE);
  const serviceName = opts.serviceName || env.OTEL_SERVICE_NAME || DEFAULT_SERVICE_NAME;

  let prometheus: ResolvedOtelConfig['prometheus'];
  if (opts.prometheus) {
    const port = opts.prometheus.port;
    if (!Number.isInteger(port) || port < 0 || port > 65535) {
      throw new Error(`Prometheus port must be an integer 0..65535, got ${port}`);
    }
    prometheus = { port, host: opts.prometheus.host || '127.0.0.1' };
  }

  return {
    tracesUrl,
    metricsUrl,
    tracesProtocol,
    metricsProtocol,
    serviceName,
    runSpans,
    flushTimeoutMs,
    exportTimeoutMs: positive(opts.exportTimeoutMs, 'export timeout (ms)', Math.max(1000, flushTimeoutMs)),
    maxQueue,
    batchSize: Math.min(maxQueue, positive(opts.batchSize, 'span batch size', 512)),
    scheduleDelayMs: positive(opts.scheduleDelayMs, 'span schedule delay (ms)', 1000),
    metricsIntervalMs: positive(
      opts.metricsIntervalMs ?? envNumber(env, 'OTEL_METRIC_EXPORT_INTERVAL'),
      'metric export interval (ms)',
      10_000,
    ),
    prometheus,
  };
}
