/**
 * `kvm-trace demo` (the README's `npm run demo`): trace the reference guest through every scenario and
 * show what kvm-trace sees, scored against the guest's ground truth. Exits non-zero when the capture does
 * not reproduce the ground truth, so the demo doubles as a self-check on a new machine.
 */
import { InvalidArgumentError, type Command } from 'commander';
import { demoText, runDemo } from '../../capture/demo.js';
// Only the flag definitions are imported eagerly: the OpenTelemetry SDK (≈ 23 MB of RSS) loads only when
// an export is asked for, see openOtel below.
import { addOtelOptions, openOtel, otelOptionsFrom, otelSummaryLine, type OtelCliValues } from './otel-lazy.js';
import { GuestUsageError, resolveScenarios, SCENARIO_CHOICES } from '../../guest/index.js';
import { CliError } from '../errors.js';
import type { CliIo } from '../io.js';
import { toCaptureError } from './capture-errors.js';

interface DemoCliOptions extends OtelCliValues {
  out: string;
  vcpus: number;
  exits: number;
  scenario: string;
  json?: boolean;
}

const intIn = (min: number, max: number) => (raw: string): number => {
  const n = Number(raw);
  if (!/^\d+$/.test(raw.trim()) || n < min || n > max) throw new InvalidArgumentError(`expected an integer from ${min} to ${max}`);
  return n;
};

export function register(program: Command, io: CliIo): void {
  const cmd = program
    .command('demo')
    .description('Trace the reference guest through every scenario and score the capture against its ground truth.')
    .option('--out <dir>', 'folder for the capture, the ground truth and the HTML report', 'kvm-trace-demo')
    .option('--vcpus <n>', 'vCPUs of the reference guest', intIn(1, 16), 2)
    .option('--exits <n>', 'loop exits per vCPU and scenario', intIn(1, 10_000_000), 2000)
    .option('--scenario <name>', `guest scenario (${SCENARIO_CHOICES.join('|')})`, 'all')
    .option('--json', 'print the result as one JSON object');
  addOtelOptions(cmd);
  cmd.addHelpText('after', '\nExamples:\n  kvm-trace demo\n  kvm-trace demo --json --vcpus 4\n  kvm-trace demo --otlp http://127.0.0.1:4318');
  cmd.action(async (o: DemoCliOptions) => {
    try {
      resolveScenarios(o.scenario); // before attaching: a typo is a usage error, not a failed capture
    } catch (err) {
      throw err instanceof GuestUsageError ? new CliError('usage', err.message) : err;
    }
    const otel = otelOptionsFrom(o);
    const warn = (line: string): void => void io.stderr.write(`kvm-trace: ${line}\n`);
    const otelSink = otel ? await openOtel({ ...otel, warn }) : undefined;
    try {
      const d = await runDemo({
        outDir: o.out,
        vcpus: o.vcpus,
        exits: o.exits,
        scenario: o.scenario,
        sinks: otelSink ? [otelSink] : [],
        log: warn,
        signals: true,
      });
      const otelStats = otelSink?.stats();
      if (o.json) {
        const { reportText: _text, ...rest } = d;
        io.stdout.write(`${JSON.stringify(otelStats ? { ...rest, otel: otelStats } : rest)}\n`);
      } else {
        io.stdout.write(demoText(d));
        if (otelStats) io.stdout.write(`${otelSummaryLine(otelStats)}\n`);
      }
      if (!d.perfect) throw new CliError('check', 'the capture does not reproduce the ground truth (see above)');
    } catch (err) {
      await otelSink?.close();
      throw toCaptureError(err);
    }
  });
}
