/**
 * The OpenTelemetry flags shared by `attach` and `demo`, and their translation to sink options. The lead
 * wires them in with two calls:
 *
 *   addOtelOptions(cmd);                                   // when defining the command
 *   const otel = otelOptionsFrom(cmd.opts());              // in the action: undefined = no export wanted
 *   const sink = otel && (await openOtelSink({ ...otel, warn: (l) => io.stderr.write(l + '\n') }));
 *   …
 *   await sink?.close(); io.stderr.write(otelSummaryLine(sink.stats()) + '\n');
 *
 * Values commander can check (numbers, choices) are checked there, so a bad flag is a usage error with
 * commander's usual one line; URL problems surface as CliError('usage').
 */
import { InvalidArgumentError, Option } from 'commander';
import type { Command } from 'commander';
import { CliError } from '../../cli/errors.js';
import { OTLP_PROTOCOLS, RUN_SPAN_MODES, resolveOtelConfig } from './config.js';
import type { OtelSinkOptions, OtlpProtocol, RunSpanMode } from './config.js';
import type { OtelStats } from './sink.js';

/** What commander hands back for the flags added by addOtelOptions. */
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

function intArg(min: number, max = Number.MAX_SAFE_INTEGER) {
  return (raw: string): number => {
    const n = Number(raw);
    if (!/^\d+$/.test(raw.trim()) || !Number.isSafeInteger(n) || n < min || n > max) {
      throw new InvalidArgumentError(`expected an integer ${min}..${max === Number.MAX_SAFE_INTEGER ? '' : max}`.trimEnd());
    }
    return n;
  };
}

export function addOtelOptions(cmd: Command): Command {
  return cmd
    .addOption(
      new Option(
        '--otlp <url>',
        'export spans and metrics over OTLP/HTTP to this collector (e.g. http://localhost:4318; default: OTEL_EXPORTER_OTLP_ENDPOINT)',
      ),
    )
    .addOption(new Option('--otlp-protocol <protocol>', 'OTLP body encoding (default: OTEL_EXPORTER_OTLP_PROTOCOL or http/protobuf)').choices(OTLP_PROTOCOLS))
    .addOption(new Option('--service-name <name>', 'service.name of the exported telemetry (default: OTEL_SERVICE_NAME or kvm-trace)'))
    .addOption(
      new Option('--run-spans <mode>', 'KVM_RUN spans: aggregate = one per vCPU per window, sample = every Nth, all (default: aggregate)').choices(
        RUN_SPAN_MODES,
      ),
    )
    .addOption(new Option('--run-sample-every <n>', 'with --run-spans sample: one KVM_RUN span every N runs per vCPU (default 100)').argParser(intArg(1)))
    .addOption(new Option('--run-window <ms>', 'with --run-spans aggregate: window per KVM_RUN span, ms of capture time (default 1000)').argParser(intArg(1)))
    .addOption(new Option('--otlp-flush-timeout <ms>', 'at the end, wait at most this long for the collector (default 3000)').argParser(intArg(1)))
    .addOption(new Option('--otlp-queue <spans>', 'span queue bound; spans beyond it are dropped and counted (default 8192)').argParser(intArg(1)))
    .addOption(new Option('--prometheus <port>', 'serve Prometheus metrics at http://127.0.0.1:PORT/metrics (0 = any free port)').argParser(intArg(0, 65535)))
    .addOption(new Option('--prometheus-host <host>', 'address for --prometheus to bind (default 127.0.0.1)'));
}

/**
 * Sink options from parsed flags (and the OTEL_* environment), or undefined when neither --otlp,
 * --prometheus nor an OTLP endpoint variable asks for an export.
 */
export function otelOptionsFrom(values: OtelCliValues, env: NodeJS.ProcessEnv = process.env): OtelSinkOptions | undefined {
  const envEndpoint =
    env.OTEL_SDK_DISABLED?.trim().toLowerCase() !== 'true' &&
    Boolean(env.OTEL_EXPORTER_OTLP_ENDPOINT || env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT || env.OTEL_EXPORTER_OTLP_METRICS_ENDPOINT);
  if (values.otlp === undefined && values.prometheus === undefined && !envEndpoint) return undefined;
  const opts: OtelSinkOptions = {
    endpoint: values.otlp,
    protocol: values.otlpProtocol,
    serviceName: values.serviceName,
    runSpans: { mode: values.runSpans ?? 'aggregate', sampleEvery: values.runSampleEvery, windowMs: values.runWindow },
    flushTimeoutMs: values.otlpFlushTimeout,
    maxQueue: values.otlpQueue,
    prometheus: values.prometheus === undefined ? undefined : { port: values.prometheus, host: values.prometheusHost },
    env,
  };
  try {
    resolveOtelConfig(opts);
  } catch (err) {
    throw new CliError('usage', (err as Error).message, { cause: err });
  }
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
