/**
 * Options of the OpenTelemetry sink: what the CLI flags and library callers can set, and the few decisions
 * that must be taken before the SDK is loaded (is anything exported at all, which signals, which OTLP
 * protocol and hence which exporter class). Everything else the standard OTEL_* variables configure —
 * endpoints, headers, compression, timeouts, TLS, resource attributes, service name, batch and metric reader
 * settings — is read by the SDK and its exporters themselves (see sink.ts); an explicit option always wins.
 *
 * No OpenTelemetry import here: `attach` and `demo` load this module eagerly and the SDK only when asked.
 */

export type OtlpProtocol = 'grpc' | 'http/protobuf' | 'http/json';
export const OTLP_PROTOCOLS: readonly OtlpProtocol[] = ['grpc', 'http/protobuf', 'http/json'];

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
  /**
   * OTLP endpoint (`--otlp`). For OTLP/HTTP a base URL such as http://localhost:4318 gets /v1/traces and
   * /v1/metrics appended (a URL already ending in /v1/<signal> is re-pointed per signal); for gRPC it is the
   * collector's http(s)://host:port. Without it the exporters read OTEL_EXPORTER_OTLP_[TRACES_|METRICS_]ENDPOINT.
   */
  endpoint?: string;
  /** OTLP protocol for both signals; default OTEL_EXPORTER_OTLP_[TRACES_|METRICS_]PROTOCOL or http/protobuf. */
  protocol?: OtlpProtocol;
  /** service.name; default OTEL_SERVICE_NAME / OTEL_RESOURCE_ATTRIBUTES, else kvm-trace. */
  serviceName?: string;
  runSpans?: RunSpanOptions;
  /** Bound on close(): flush what is queued, then shut down, within this many ms (default 3000). */
  flushTimeoutMs?: number;
  /** Span queue bound; spans arriving at a full queue are dropped and counted (default OTEL_BSP_MAX_QUEUE_SIZE or 8192). */
  maxQueue?: number;
  /** Spans per OTLP request (default OTEL_BSP_MAX_EXPORT_BATCH_SIZE or 512). */
  batchSize?: number;
  /** How long a span may wait in the queue before a batch is sent (default OTEL_BSP_SCHEDULE_DELAY or 1000 ms). */
  scheduleDelayMs?: number;
  /** Export spans (default: yes when an endpoint is configured and OTEL_TRACES_EXPORTER is not "none"). */
  traces?: boolean;
  /** Export metrics over OTLP (default: as for traces, with OTEL_METRICS_EXPORTER). */
  metrics?: boolean;
  /** OTLP metric export interval (default OTEL_METRIC_EXPORT_INTERVAL or 10000 ms). */
  metricsIntervalMs?: number;
  /** Serve a Prometheus scrape endpoint (host default 127.0.0.1; port 0 = ephemeral). */
  prometheus?: { port: number; host?: string };
  /** Where the one-line warnings ("warning: …") go (default: stderr, prefixed with "kvm-trace: "). */
  warn?: (line: string) => void;
}

/** One OTLP signal to export: its protocol and, when given explicitly, its URL (else the exporter's env/default). */
export interface SignalTarget {
  protocol: OtlpProtocol;
  url?: string;
}

export interface ResolvedOtelConfig {
  traces?: SignalTarget;
  metrics?: SignalTarget;
  serviceName?: string;
  runSpans: Required<RunSpanOptions>;
  flushTimeoutMs: number;
  maxQueue?: number;
  batchSize?: number;
  scheduleDelayMs?: number;
  metricsIntervalMs?: number;
  prometheus?: { port: number; host: string };
}

/** A sink option or an OTEL_* value that cannot work; the CLI turns it into a usage error. */
export class OtelOptionError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'OtelOptionError';
  }
}

export const DEFAULT_SERVICE_NAME = 'kvm-trace';
export const DEFAULT_FLUSH_TIMEOUT_MS = 3000;
export const DEFAULT_SAMPLE_EVERY = 100;
export const DEFAULT_WINDOW_MS = 1000;

type Signal = 'traces' | 'metrics';
type Env = Record<string, string | undefined>;

const envValue = (env: Env, name: string): string | undefined => {
  const v = env[name]?.trim();
  return v ? v : undefined;
};

/** OTEL_SDK_DISABLED=true: the SDK is off for every signal (spec: case-insensitive "true"). */
export function sdkDisabled(env: Env = process.env): boolean {
  return envValue(env, 'OTEL_SDK_DISABLED')?.toLowerCase() === 'true';
}

/** `base` + `/v1/<signal>`, or a full signal URL re-pointed to the other signal (OTLP/HTTP). */
export function signalUrl(base: string, signal: Signal): string {
  const url = checkUrl(base, 'OTLP endpoint');
  const path = url.pathname.replace(/\/+$/, '');
  const known = /\/v1\/(traces|metrics|logs)$/.exec(path);
  url.pathname = known ? `${path.slice(0, known.index)}/v1/${signal}` : `${path}/v1/${signal}`;
  return url.toString();
}

function checkUrl(raw: string, what: string): URL {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new OtelOptionError(`${what} "${raw}" is not a URL (expected e.g. http://localhost:4318)`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new OtelOptionError(`${what} "${raw}" must be http:// or https://`);
  }
  return url;
}

function protocolFor(signal: Signal, explicit: OtlpProtocol | undefined, env: Env): OtlpProtocol {
  const specific = `OTEL_EXPORTER_OTLP_${signal.toUpperCase()}_PROTOCOL`;
  const [source, raw] = explicit
    ? ['OTLP protocol', explicit]
    : envValue(env, specific)
      ? [specific, envValue(env, specific)!]
      : ['OTEL_EXPORTER_OTLP_PROTOCOL', envValue(env, 'OTEL_EXPORTER_OTLP_PROTOCOL') ?? 'http/protobuf'];
  if (!(OTLP_PROTOCOLS as readonly string[]).includes(raw)) {
    throw new OtelOptionError(`${source} "${raw}" is not one of ${OTLP_PROTOCOLS.join(', ')}`);
  }
  return raw as OtlpProtocol;
}

/**
 * OTEL_TRACES_EXPORTER / OTEL_METRICS_EXPORTER: "none" turns the signal off; "otlp" asks for it (at the
 * exporter's default endpoint when no endpoint variable is set). Other exporters (console, zipkin, prometheus)
 * are not what a capture tool exports to: they neither ask for nor prevent an OTLP export (for a scrape
 * endpoint use --prometheus PORT).
 */
function exporterChoice(signal: Signal, env: Env): 'otlp' | 'none' | undefined {
  const list = (envValue(env, `OTEL_${signal.toUpperCase()}_EXPORTER`) ?? '').split(',').map((s) => s.trim());
  if (list.includes('none')) return 'none';
  if (list.includes('otlp')) return 'otlp';
  return undefined;
}

/** Whether the environment alone asks for an OTLP export of this signal. */
function envWants(signal: Signal, env: Env): boolean {
  return (
    exporterChoice(signal, env) === 'otlp' ||
    envValue(env, 'OTEL_EXPORTER_OTLP_ENDPOINT') !== undefined ||
    envValue(env, `OTEL_EXPORTER_OTLP_${signal.toUpperCase()}_ENDPOINT`) !== undefined
  );
}

function target(signal: Signal, opts: OtelSinkOptions, env: Env): SignalTarget | undefined {
  const wanted = opts[signal] ?? (opts.endpoint !== undefined || envWants(signal, env));
  if (!wanted || exporterChoice(signal, env) === 'none') return undefined;
  const protocol = protocolFor(signal, opts.protocol, env);
  if (opts.endpoint === undefined) return { protocol };
  if (protocol === 'grpc') {
    checkUrl(opts.endpoint, 'OTLP endpoint');
    return { protocol, url: opts.endpoint };
  }
  return { protocol, url: signalUrl(opts.endpoint, signal) };
}

function positive(value: number | undefined, name: string): number | undefined {
  if (value === undefined) return undefined;
  if (!Number.isInteger(value) || value <= 0) throw new OtelOptionError(`${name} must be a positive integer, got ${value}`);
  return value;
}

/**
 * Combine options with the OTEL_* variables that decide what is exported and how; throws an OtelOptionError
 * (one line) for values that cannot work.
 */
export function resolveOtelConfig(opts: OtelSinkOptions = {}, env: Env = process.env): ResolvedOtelConfig {
  if (sdkDisabled(env)) throw new OtelOptionError('OTEL_SDK_DISABLED=true turns OpenTelemetry off: unset it to export');
  const mode = opts.runSpans?.mode ?? 'aggregate';
  if (!RUN_SPAN_MODES.includes(mode)) throw new OtelOptionError(`run span mode "${mode}" is not one of ${RUN_SPAN_MODES.join(', ')}`);

  let prometheus: ResolvedOtelConfig['prometheus'];
  if (opts.prometheus) {
    const port = opts.prometheus.port;
    if (!Number.isInteger(port) || port < 0 || port > 65535) throw new OtelOptionError(`Prometheus port must be an integer 0..65535, got ${port}`);
    prometheus = { port, host: opts.prometheus.host || '127.0.0.1' };
  }
  if (opts.serviceName !== undefined && opts.serviceName.trim() === '') throw new OtelOptionError('service name must not be empty');

  return {
    traces: target('traces', opts, env),
    metrics: target('metrics', opts, env),
    serviceName: opts.serviceName,
    runSpans: {
      mode,
      sampleEvery: positive(opts.runSpans?.sampleEvery, 'run sample interval') ?? DEFAULT_SAMPLE_EVERY,
      windowMs: positive(opts.runSpans?.windowMs, 'run window (ms)') ?? DEFAULT_WINDOW_MS,
    },
    flushTimeoutMs: positive(opts.flushTimeoutMs, 'flush timeout (ms)') ?? DEFAULT_FLUSH_TIMEOUT_MS,
    maxQueue: positive(opts.maxQueue, 'span queue size'),
    batchSize: positive(opts.batchSize, 'span batch size'),
    scheduleDelayMs: positive(opts.scheduleDelayMs, 'span schedule delay (ms)'),
    metricsIntervalMs: positive(opts.metricsIntervalMs, 'metric export interval (ms)'),
    prometheus,
  };
}

/** Whether the options or the environment ask for any export at all (decided without loading the SDK). */
export function exportRequested(opts: Pick<OtelSinkOptions, 'endpoint' | 'prometheus'>, env: Env = process.env): boolean {
  return opts.endpoint !== undefined || opts.prometheus !== undefined || envWants('traces', env) || envWants('metrics', env);
}
