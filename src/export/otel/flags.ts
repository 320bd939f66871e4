/**
 * The OpenTelemetry flags shared by `attach` and `demo`, as plain definitions: the CLI stage turns them into
 * commander options (src/cli/commands/otel-lazy.ts) and wraps OtelOptionError into its own usage error, so
 * this stage imports nothing from the CLI. Also the translation of parsed values into sink options and the
 * summary line. Loaded eagerly by the CLI: no OpenTelemetry import here.
 */
import { exportRequested, OTLP_PROTOCOLS, OtelOptionError, resolveOtelConfig, RUN_SPAN_MODES, sdkDisabled } from './options.js';
import type { OtelSinkOptions, OtlpProtocol, RunSpanMode } from './options.js';
import type { OtelStats } from './sink.js';

/** What the flags parse into (keys are commander's camel-cased flag names). */
export interface OtelCliValues {
  otlp?: string;
  otlpProtocol?: OtlpProtocol;
  serviceName?: string;
  runSpans?: RunSpanMode;
  runSampleEvery?: number;
  runWindow?: number;
  otlpFlushTimeout?: number;
  otlpQueue?: number;
  prometheus?: number;
  prometheusHost?: string;
}

export interface OtelFlag {
  /** e.g. "--otlp <url>" */
  flags: string;
  description: string;
  /** The only values accepted. */
  choices?: readonly string[];
  /** Parse and check the raw value; throws OtelOptionError with the reason. */
  parse?: (raw: string) => number;
}

function intArg(min: number, max = Number.MAX_SAFE_INTEGER): (raw: string) => number {
  return (raw) => {
    const n = Number(raw);
    if (!/^\d+$/.test(raw.trim()) || !Number.isSafeInteger(n) || n < min || n > max) {
      throw new OtelOptionError(`expected an integer ${min}..${max === Number.MAX_SAFE_INTEGER ? '' : max}`.trimEnd());
    }
    return n;
  };
}

export const OTEL_FLAGS: readonly OtelFlag[] = [
  {
    flags: '--otlp <url>',
    description:
      'export spans and metrics over OTLP to this collector (e.g. http://localhost:4318, or :4317 with grpc; default: OTEL_EXPORTER_OTLP_ENDPOINT)',
  },
  {
    flags: '--otlp-protocol <protocol>',
    description: 'OTLP protocol (default: OTEL_EXPORTER_OTLP_PROTOCOL or http/protobuf)',
    choices: OTLP_PROTOCOLS,
  },
  { flags: '--service-name <name>', description: 'service.name of the exported telemetry (default: OTEL_SERVICE_NAME or kvm-trace)' },
  {
    flags: '--run-spans <mode>',
    description: 'KVM_RUN spans: aggregate = one per vCPU per window, sample = every Nth, all (default: aggregate)',
    choices: RUN_SPAN_MODES,
  },
  { flags: '--run-sample-every <n>', description: 'with --run-spans sample: one KVM_RUN span every N runs per vCPU (default 100)', parse: intArg(1) },
  { flags: '--run-window <ms>', description: 'with --run-spans aggregate: window per KVM_RUN span, ms of capture time (default 1000)', parse: intArg(1) },
  { flags: '--otlp-flush-timeout <ms>', description: 'at the end, wait at most this long for the collector (default 3000)', parse: intArg(1) },
  { flags: '--otlp-queue <spans>', description: 'span queue bound; spans beyond it are dropped and counted (default 8192)', parse: intArg(1) },
  {
    flags: '--prometheus <port>',
    description: 'serve Prometheus metrics at http://127.0.0.1:PORT/metrics (0 = any free port)',
    parse: intArg(0, 65535),
  },
  { flags: '--prometheus-host <host>', description: 'address for --prometheus to bind (default 127.0.0.1)' },
];

/**
 * Sink options from parsed flags (and the OTEL_* environment), or undefined when neither --otlp,
 * --prometheus nor an OTLP variable asks for an export. Throws OtelOptionError for values that cannot work.
 */
export function otelOptionsFrom(values: OtelCliValues, env: NodeJS.ProcessEnv = process.env): OtelSinkOptions | undefined {
  const explicit = values.otlp !== undefined || values.prometheus !== undefined;
  // OTEL_SDK_DISABLED silences an export configured by the environment; flags asking for one conflict with it.
  if (sdkDisabled(env) && !explicit) return undefined;
  if (!exportRequested({ endpoint: values.otlp, prometheus: values.prometheus === undefined ? undefined : { port: values.prometheus } }, env)) {
    return undefined;
  }
  const opts: OtelSinkOptions = {
    endpoint: values.otlp,
    protocol: values.otlpProtocol,
    serviceName: values.serviceName,
    runSpans: { mode: values.runSpans ?? 'aggregate', sampleEvery: values.runSampleEvery, windowMs: values.runWindow },
    flushTimeoutMs: values.otlpFlushTimeout,
    maxQueue: values.otlpQueue,
    prometheus: values.prometheus === undefined ? undefined : { port: values.prometheus, host: values.prometheusHost },
  };
  resolveOtelConfig(opts, env);
  return opts;
}

/** One line for the capture summary, e.g. "otel: 1523 spans, 1523 exported, 0 dropped; 100000 KVM_RUNs in aggregate spans". */
export function otelSummaryLine(s: OtelStats): string {
  const runs: string[] = [];
  if (s.aggregatedRuns) runs.push(`${s.aggregatedRuns} KVM_RUNs in aggregate spans`);
  if (s.sampledOutRuns) runs.push(`${s.sampledOutRuns} KVM_RUNs sampled out`);
  const errs = s.exportErrors ? `, ${s.exportErrors} failed export requests` : '';
  return `otel: ${s.spans} spans, ${s.exported} exported, ${s.dropped} dropped${errs}${runs.length ? `; ${runs.join(', ')}` : ''}`;
}
