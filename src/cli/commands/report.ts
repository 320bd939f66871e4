/**
 * `kvm-trace report FILE [--format text|json|html] [-o OUT] [--cacheline N]`: the crossing report of a
 * capture — JSONL from `attach -o`, or a binary capture from `attach -w` (decoded on the fly). Bad input
 * (garbage, truncated, empty) is one line naming file:line and exit code 1.
 */
import type { Command } from 'commander';
import type { CliIo } from '../io.js';
import { CliError } from '../errors.js';
import { JsonlError, makeReport, REPORT_FORMATS, type ReportFormat } from '../../report/index.js';
import { decodeCapture } from '../../capture/ktcap/decode.js';
import { CaptureFileError, isCaptureFile } from '../../capture/ktcap/reader.js';
import type { TraceRecord } from '../../decode/records.js';

export function register(program: Command, io: CliIo): void {
  program
    .command('report')
    .description('Report per ioctl and vCPU from a capture: buffer flags, kvm_run cache lines, latency, lost records, leaked fds.')
    .argument('<file>', 'JSONL written by `kvm-trace attach -o`, or a binary capture from `attach -w`')
    .option('--format <format>', `output format: ${REPORT_FORMATS.join('|')}`, 'text')
    .option('-o, --output <file>', 'write the report to this file instead of stdout')
    .option('--cacheline <bytes>', 'cache line size (default: the CPU\'s, from sysfs; 64 if unknown)')
    .option('--btf <path>', 'kernel BTF to read struct layouts from', '/sys/kernel/btf/vmlinux')
    .addHelpText('after', '\nExamples:\n  kvm-trace report trace.jsonl\n  kvm-trace report trace.jsonl --format html -o report.html\n  kvm-trace report trace.jsonl --format json | jq .totals')
    .action(async (file: string, opts: { format: string; output?: string; cacheline?: string; btf: string }) => {
      if (!REPORT_FORMATS.includes(opts.format as ReportFormat)) {
        throw new CliError('usage', `--format must be one of ${REPORT_FORMATS.join(', ')} (got "${opts.format}")`);
      }
      let lineSize: number | undefined;
      if (opts.cacheline !== undefined) {
        lineSize = Number(opts.cacheline);
        if (!Number.isInteger(lineSize) || lineSize < 8 || lineSize > 4096 || (lineSize & (lineSize - 1)) !== 0) {
          throw new CliError('usage', `--cacheline must be a power of two between 8 and 4096 (got "${opts.cacheline}")`);
        }
      }
      try {
        const feed = isCaptureFile(file)
          ? async (add: (r: TraceRecord) => void): Promise<void> => {
              await decodeCapture(file, { sinks: [{ write: add, close: async () => {} }], lineSize });
            }
          : undefined;
        const { output } = await makeReport({ file, format: opts.format as ReportFormat, out: opts.output, lineSize, btfPath: opts.btf, feed });
        if (opts.output) io.stderr.write(`kvm-trace: report written to ${opts.output}\n`);
        else io.stdout.write(output);
      } catch (err) {
        if (err instanceof JsonlError || err instanceof CaptureFileError) throw new CliError('input', err.message, { cause: err });
        if ((err as NodeJS.ErrnoException)?.code && opts.output) {
          throw new CliError('input', `cannot write ${opts.output}: ${(err as NodeJS.ErrnoException).code}`, { cause: err });
        }
        throw err;
      }
    });
}
