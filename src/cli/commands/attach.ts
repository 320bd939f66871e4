/**
 * `kvm-trace attach`: trace the KVM ioctls of running processes (or of every process) until SIGINT,
 * SIGTERM or --duration: strace-like lines while it runs, JSONL with -o, OpenTelemetry with --otlp, and a
 * summary on stop; --aggregate counts in the kernel instead (no per-call records, only the summary).
 * Failures are one line and a non-zero exit; the BPF side is detached on every path.
 */
import { existsSync } from 'node:fs';
import { InvalidArgumentError, Option, type Command } from 'commander';
import { capture } from '../../capture/session.js';
import { stopSignal } from '../../capture/stop-signal.js';
import { summaryText } from '../../capture/summary-text.js';
import { JsonlSink } from '../../decode/jsonl-sink.js';
import { LineSink } from '../../decode/format.js';
import type { RecordSink } from '../../decode/sink.js';
// Only the flag definitions are imported eagerly: the OpenTelemetry SDK (≈ 23 MB of RSS) loads only when
// an export is asked for, see openOtel below.
import { addOtelOptions, openOtel, otelOptionsFrom, otelSummaryLine, type OtelCliValues } from './otel-lazy.js';
import { STRATEGIES, type StrategyOption } from '../../bpf/programs.js';
import { CliError } from '../errors.js';
import { pidArg } from '../arg-parsers.js';
import type { CliIo } from '../io.js';
import { toCaptureError } from './capture-errors.js';
import { holdYoungGeneration } from '../heap.js';
import { packageVersion } from '../version.js';
import { CaptureWriter } from '../../capture/ktcap/writer.js';
import type { SummaryRecord } from '../../decode/records.js';

interface AttachCliOptions extends OtelCliValues {
  pid: number[];
  comm?: string;
  duration?: number;
  output?: string;
  write?: string;
  json?: boolean;
  quiet?: boolean;
  strategy: StrategyOption;
  ringMb: number;
  lean?: boolean;
  aggregate?: boolean;
  hwExits?: boolean;
  verbose?: boolean;
}

function positive(raw: string): number {
  const n = Number(raw);
  if (!Number.isFinite(n) || n <= 0) throw new InvalidArgumentError(`'${raw}' is not a positive number`);
  return n;
}

function ringMbArg(raw: string): number {
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1 || n > 1024 || (n & (n - 1)) !== 0) {
    throw new InvalidArgumentError(`'${raw}' is not a power of two from 1 to 1024`);
  }
  return n;
}

export function register(program: Command, io: CliIo): void {
  const cmd = program
    .command('attach')
    .description('Trace the KVM ioctls of running processes until SIGINT/SIGTERM or --duration.')
    .option('-p, --pid <pid>', 'trace this process (repeatable); default: every process', pidArg, [])
    .option('-c, --comm <name>', 'trace only processes with this name (≤ 15 characters)')
    .option('--duration <seconds>', 'stop after this many seconds', positive)
    .option('-o, --output <file>', 'write one JSON record per line to FILE')
    .option('-w, --write <file>', 'record the raw records to a binary capture FILE (cheapest full capture; no live lines): kvm-trace decode FILE turns it into JSONL, kvm-trace report FILE reports it')
    .option('--json', 'print the final summary as one JSON object on stdout (no live lines)')
    .option('-q, --quiet', 'no live lines, only the summary')
    .addOption(new Option('--strategy <s>', 'which programs to use').choices([...STRATEGIES]).default('auto'))
    .option('--ring-mb <n>', 'ring buffer size in MiB (power of two)', ringMbArg, 8)
    .option('--lean', 'skip argument decoding and exit details (fastest per-call capture)')
    .option(
      '--aggregate',
      'count in the kernel instead of recording each call (lowest overhead): no live lines, the same summary on stop (p50/p99 estimated from a histogram); with -o the file gets only the summary record',
    )
    .option(
      '--hw-exits',
      'also count in-kernel (hardware) exits per KVM_RUN and per exit reason, where the kernel emits kvm:kvm_exit (kvm-intel, kvm-amd; not PVM): one program run per hardware exit',
    )
    .option('--verbose', "show libbpf's messages");
  addOtelOptions(cmd);
  cmd.addHelpText(
    'after',
    `
Examples:
  kvm-trace attach -p $(pidof qemu-system-x86_64) -o trace.jsonl
  kvm-trace attach -p $(pidof qemu-system-x86_64) -w trace.ktcap && kvm-trace decode trace.ktcap -o trace.jsonl
  kvm-trace attach -c firecracker --duration 10 -q --json
  kvm-trace attach -p 1234 --otlp http://127.0.0.1:4318
  kvm-trace attach -p $(pidof firecracker) --aggregate --duration 30`,
  );
  cmd.action(async (o: AttachCliOptions) => {
    for (const pid of o.pid) {
      if (!existsSync(`/proc/${pid}`)) throw new CliError('input', `no process with id ${pid}`);
    }
    if (o.write && o.aggregate) throw new CliError('usage', '--write records every raw record; --aggregate records none: choose one');
    const otel = otelOptionsFrom(o);
    holdYoungGeneration();
    const stop = stopSignal({ durationS: o.duration, signals: true });
    const sinks: RecordSink[] = [];
    const warn = (line: string): void => void io.stderr.write(`kvm-trace: ${line}\n`);
    try {
      const jsonl = o.output ? await openOutput(o.output) : undefined;
      if (jsonl) sinks.push(jsonl);
      const otelSink = otel ? await openOtel({ ...otel, warn }) : undefined;
      if (otelSink) sinks.push(otelSink);
      if (!o.quiet && !o.json && !o.aggregate && !o.write) sinks.push(new LineSink(io.stdout as NodeJS.WriteStream));
      const raw = o.write ? await openCapture(o.write) : undefined;
      // With -w alone nothing is shown or written live: the records are only copied, decoded later.
      const decode = !raw || sinks.length > 0;
      await capture({
        pids: o.pid,
        comm: o.comm,
        strategy: o.strategy,
        ringBytes: o.ringMb << 20,
        lean: o.lean,
        aggregate: o.aggregate,
        hwExits: o.hwExits,
        verbose: o.verbose,
        signal: stop.signal,
        sinks,
        log: warn,
        raw,
        decode,
        version: packageVersion(),
        // Printed as soon as it exists: the BPF links are detached after it (that takes the kernel a while).
        onSummary: (summary) => {
          const file = raw && { path: raw.path, records: raw.records, dropped: raw.dropped, bytes: raw.bytes };
          if (o.json) io.stdout.write(`${JSON.stringify(file ? { ...summary, capture_file: file } : summary)}\n`);
          else io.stderr.write(decode ? summaryText(summary) : rawSummaryText(summary));
          if (file) {
            io.stderr.write(`${file.records} raw records (${(file.bytes / 1e6).toFixed(1)} MB) written to ${file.path}` +
              `${file.dropped ? `, ${file.dropped} dropped (the disk could not keep up)` : ''}; decode: kvm-trace decode ${file.path}\n`);
          }
        },
      });
      if (otelSink) io.stderr.write(`${otelSummaryLine(otelSink.stats())}\n`);
      if (jsonl) {
        if (jsonl.error || jsonl.stats.dropped > 0) {
          const why = jsonl.error ? `: ${(jsonl.error as NodeJS.ErrnoException).code ?? jsonl.error.message}` : '';
          throw new CliError('input', `${jsonl.stats.dropped} records could not be written to ${o.output}${why}`);
        }
        io.stderr.write(`${jsonl.stats.records} records written to ${o.output}\n`);
      }
    } catch (err) {
      await Promise.allSettled(sinks.map((s) => s.close()));
      throw toCaptureError(err);
    } finally {
      stop.dispose();
    }
  });
}

/** The summary of a capture that was only recorded (-w): counts, no decoded tables. */
function rawSummaryText(s: SummaryRecord): string {
  return `--- kvm-trace: ${s.events} records captured in ${s.duration_s.toFixed(2)} s, strategy ${s.strategy}; lost: ${s.lost} ---\n`;
}

async function openCapture(path: string): Promise<CaptureWriter> {
  try {
    return await CaptureWriter.open(path);
  } catch (err) {
    throw new CliError('input', `cannot write ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
}

async function openOutput(path: string): Promise<JsonlSink> {
  try {
    return await JsonlSink.open(path);
  } catch (err) {
    throw new CliError('input', `cannot write ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
}
