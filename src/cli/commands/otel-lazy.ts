/**
 * The OpenTelemetry flags of `attach` and `demo`, turned into commander options, and the sink opened
 * through a dynamic import, so that a capture without --otlp / --prometheus / OTLP variables never loads
 * the SDK (NodeSDK and its exporters add ≈ 25 MB to the tracer's resident memory). The export stage defines
 * the flags and throws its own OtelOptionError; here they become commander's and the CLI's usage errors.
 */
import { InvalidArgumentError, Option, type Command } from 'commander';
import { OTEL_FLAGS, otelOptionsFrom as optionsFrom, otelSummaryLine, type OtelCliValues } from '../../export/otel/flags.js';
import { OtelOptionError, type OtelSinkOptions } from '../../export/otel/options.js';
import type { OtelSink } from '../../export/otel/sink.js';
import { CliError } from '../errors.js';

export { otelSummaryLine, type OtelCliValues };

/** Add the OpenTelemetry flags to a command; bad values are commander usage errors. */
export function addOtelOptions(cmd: Command): Command {
  for (const f of OTEL_FLAGS) {
    const opt = new Option(f.flags, f.description);
    if (f.choices) opt.choices(f.choices);
    const parse = f.parse;
    if (parse) {
      opt.argParser((raw: string) => {
        try {
          return parse(raw);
        } catch (err) {
          throw err instanceof OtelOptionError ? new InvalidArgumentError(err.message) : err;
        }
      });
    }
    cmd.addOption(opt);
  }
  return cmd;
}

/** Sink options from the parsed flags and the environment (undefined = no export); problems are usage errors. */
export function otelOptionsFrom(values: OtelCliValues, env: NodeJS.ProcessEnv = process.env): OtelSinkOptions | undefined {
  try {
    return optionsFrom(values, env);
  } catch (err) {
    if (err instanceof OtelOptionError) throw new CliError('usage', err.message, { cause: err });
    throw err;
  }
}

/** Open the sink (loading the SDK now) and say where the scrape endpoint listens (--prometheus 0 picks a port). */
export async function openOtel(opts: OtelSinkOptions): Promise<OtelSink> {
  const { openOtelSink } = await import('../../export/otel/sink.js');
  const sink = await openOtelSink(opts);
  const { prometheusUrl } = await sink.start();
  if (prometheusUrl) opts.warn?.(`Prometheus metrics at ${prometheusUrl}`);
  return sink;
}
