/**
 * `kvm-trace decode FILE [-o OUT.jsonl]`: a binary capture (`attach -w`) decoded offline into the JSONL
 * records a live `attach -o` would have written — the same records, the summary last — on stdout or into
 * OUT; the summary as text on stderr (or, with --json, as one object on stderr). Bad input is one line.
 */
import type { Writable } from 'node:stream';
import type { Command } from 'commander';
import type { CliIo } from '../io.js';
import { CliError } from '../errors.js';
import { JsonlSink } from '../../decode/jsonl-sink.js';
import { summaryText } from '../../capture/summary-text.js';
import { decodeCapture } from '../../capture/ktcap/decode.js';
import { CaptureFileError } from '../../capture/ktcap/reader.js';
import { lineSizeArg } from '../arg-parsers.js';

interface DecodeCliOptions {
  output?: string;
  lean?: boolean;
  cacheline?: number;
  quiet?: boolean;
  json?: boolean;
}

export function register(program: Command, io: CliIo): void {
  program
    .command('decode')
    .description('Decode a binary capture (attach -w) into JSONL records, as attach -o writes them.')
    .argument('<file>', 'binary capture written by `kvm-trace attach -w`')
    .option('-o, --output <file>', 'write the JSONL records to FILE instead of stdout')
    .option('--lean', 'skip argument decoding and exit details (default: as the capture was taken)')
    .option('--cacheline <bytes>', "cache line size for the buffer flags (default: the capturing machine's)", lineSizeArg)
    .option('-q, --quiet', 'no summary on stderr')
    .option('--json', 'the summary as one JSON object on stderr')
    .addHelpText('after', '\nExamples:\n  kvm-trace decode trace.ktcap -o trace.jsonl\n  kvm-trace decode trace.ktcap | jq -c \'select(.name == "KVM_RUN") | .exit.reason\'')
    .action(async (file: string, o: DecodeCliOptions) => {
      let sink: JsonlSink;
      try {
        // stdout is a Writable (a tty, pipe or file stream); tests pass their own.
        sink = o.output ? await JsonlSink.open(o.output) : new JsonlSink(io.stdout as Writable, { endStream: false });
      } catch (err) {
        throw new CliError('input', `cannot write ${o.output}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
      }
      try {
        const d = await decodeCapture(file, { sinks: [sink], lean: o.lean, lineSize: o.cacheline });
        if (sink.error || sink.stats.dropped > 0) throw new CliError('input', `${sink.stats.dropped} records could not be written${o.output ? ` to ${o.output}` : ''}`);
        if (!o.quiet) io.stderr.write(o.json ? `${JSON.stringify(d.summary)}\n` : summaryText(d.summary));
        if (!d.complete) io.stderr.write(`kvm-trace: ${file} has no end (the tracer was killed?): decoded the ${d.records} records it holds\n`);
        if (o.output && !o.quiet) io.stderr.write(`${sink.stats.records} records written to ${o.output}\n`);
      } catch (err) {
        await sink.close();
        if (err instanceof CaptureFileError) throw new CliError('input', err.message, { cause: err });
        throw err;
      }
    });
}
