/**
 * kt-fdvmm (fd-vmm.c) for the tests that trace it: built on the spot with cc, then run under a real capture
 * of every process named kt-fdvmm. test/fd-lifecycle.test.ts checks the records, test/otel-fd-vmm.test.ts
 * the OpenTelemetry export of the same runs.
 */
import { execFile, spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { capture } from '../../src/capture/session.js';
import { stopSignal } from '../../src/capture/stop-signal.js';
import type { SummaryRecord, TraceRecord } from '../../src/decode/records.js';
import type { RecordSink } from '../../src/decode/sink.js';

export const FD_VMM_COMM = 'kt-fdvmm';

/** Why the kt-fdvmm tests cannot run here (no C compiler), or undefined. */
export function fdVmmSkipReason(): string | undefined {
  return spawnSync('cc', ['--version']).status === 0 ? undefined : 'no C compiler (cc) to build the test VMM';
}

/** Build kt-fdvmm into `dir`; returns the binary's path. */
export function buildFdVmm(dir: string): string {
  const bin = join(dir, FD_VMM_COMM);
  const src = fileURLToPath(new URL('./fd-vmm.c', import.meta.url));
  const r = spawnSync('cc', ['-O1', '-Wall', '-Werror', '-o', bin, src], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`building ${src} failed: ${r.stderr}`);
  return bin;
}

export type Step = Record<string, number | string> & { step: string };

export interface Traced {
  records: TraceRecord[];
  steps: Step[];
  summary: SummaryRecord;
}

/**
 * Trace every process named kt-fdvmm while `bin` runs `argv` (a mode and its arguments); the capture ends
 * when it has exited. `extraSinks` get the records too; `aggregate` captures in aggregate mode.
 */
export async function traceVmm(bin: string, argv: string[], extraSinks: RecordSink[] = [], opts: { aggregate?: boolean } = {}): Promise<Traced> {
  const mode = argv[0];
  const records: TraceRecord[] = [];
  const sink: RecordSink = { write: (r) => void records.push(r), close: async () => {} };
  const stop = stopSignal();
  let stdout = '';
  try {
    const cap = await capture({
      comm: FD_VMM_COMM,
      aggregate: opts.aggregate,
      signal: stop.signal,
      sinks: [sink, ...extraSinks],
      drainIntervalMs: 10,
      onAttached: async () => {
        try {
          stdout = await new Promise<string>((resolve, reject) =>
            execFile(bin, argv, (err, out, errOut) => (err ? reject(new Error(`${mode}: ${errOut || err.message}`)) : resolve(out))),
          );
        } finally {
          stop.stop('vmm done');
        }
      },
    });
    const steps = stdout.trim().split('\n').map((l) => JSON.parse(l) as Step);
    return { records, steps, summary: cap.summary };
  } finally {
    stop.dispose();
  }
}

export function stepOf(t: Traced, name: string): Step {
  const s = t.steps.find((x) => x.step === name);
  if (!s) throw new Error(`the VMM printed no "${name}" step: ${JSON.stringify(t.steps)}`);
  return s;
}
