/**
 * `kvm-trace demo`: the whole tool on known input. Attach to this very process, run the reference guest
 * through every scenario (including `layout`, whose argument buffers are placed aligned, misaligned,
 * across a cache line and across a page), stop, and score the capture against the guest's own ground
 * truth: issued vs captured calls, kvm_run addresses, and the precision/recall of the buffer flags.
 * Writes the capture (JSONL), the ground truth and the HTML report into one output folder.
 */
import { mkdirSync, readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { runGuest, type GuestResult, type GtRecord } from '../guest/index.js';
import type { HookStatus, TraceRecord } from '../decode/records.js';
import { JsonlSink } from '../decode/jsonl-sink.js';
import type { RecordSink } from '../decode/sink.js';
import { scoreFlags, type ScoreResult } from '../analysis/score.js';
import { buildReportModel, renderHtml, renderText, type ReportModel } from '../report/index.js';
import { btfTypeSource } from '../btf/type-source.js';
import { kernelBtf } from '../btf/kernel.js';
import { ioctlByName } from '../kvm/abi/ioctl-table.js';
import { capture, type CaptureResult } from './session.js';
import { stopSignal } from './stop-signal.js';
import { isPerfectMatch, matchGroundTruth, type GroundTruthMatch } from './ground-truth.js';

export interface DemoOptions {
  outDir: string;
  vcpus?: number;
  exits?: number;
  scenario?: string;
  /** Extra sinks (OpenTelemetry). */
  sinks?: RecordSink[];
  log?: (line: string) => void;
  /** SIGINT/SIGTERM end the demo early (the CLI); tests pass false. */
  signals?: boolean;
}

export interface DemoResult {
  issued: number;
  captured: number;
  matched: number;
  lost: number;
  flags: { precision: number; recall: number; misaligned: ScoreResult['misaligned']; cacheline_cross: ScoreResult['cacheline_cross']; buffers: number };
  ground_truth: GroundTruthMatch;
  perfect: boolean;
  strategy: string;
  /** Per copy hook (the kernel function it observes): attached or not, and why. */
  hooks: Record<string, HookStatus>;
  /** Copied buffers of the capture by source: seen by a hook, derived from the copy rules (unknown: length not known). */
  copies: { observed: number; derived: number; unknown: number };
  attach_ms: number;
  guest: Pick<GuestResult, 'vcpus' | 'exits' | 'ioctls' | 'long_mode' | 'elapsed_s' | 'scenarios'>;
  files: { capture: string; ground_truth: string; report_html: string };
  /** The report's text rendering (not in --json output). */
  reportText: string;
}

/** A sink that keeps every record in memory, for scoring after the capture. */
class MemorySink implements RecordSink {
  readonly records: TraceRecord[] = [];
  write(r: TraceRecord): void {
    this.records.push(r);
  }
  async close(): Promise<void> {}
}

export async function runDemo(opts: DemoOptions): Promise<DemoResult> {
  const outDir = resolve(opts.outDir);
  mkdirSync(outDir, { recursive: true });
  const files = {
    capture: join(outDir, 'capture.jsonl'),
    ground_truth: join(outDir, 'ground-truth.jsonl'),
    report_html: join(outDir, 'report.html'),
  };
  const memory = new MemorySink();
  const stop = stopSignal({ signals: opts.signals ?? false });
  let guest: GuestResult | undefined;
  let cap: CaptureResult;
  try {
    cap = await capture({
      pids: [process.pid],
      signal: stop.signal,
      sinks: [await JsonlSink.open(files.capture), memory, ...(opts.sinks ?? [])],
      log: opts.log,
      onAttached: async () => {
        try {
          guest = await runGuest(
            { scenario: opts.scenario ?? 'all', vcpus: opts.vcpus ?? 2, exits: opts.exits ?? 2000, log: files.ground_truth },
            stop.signal,
          );
        } finally {
          stop.stop('guest finished');
        }
      },
    });
  } finally {
    stop.dispose();
  }
  if (!guest) throw new Error(`the reference guest did not finish (${stop.reason() ?? 'stopped'})`);

  const truth = readFileSync(files.ground_truth, 'utf8')
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => JSON.parse(l) as GtRecord);
  const gt = matchGroundTruth(truth, memory.records, process.pid);
  const score = scoreFlags(truth, memory.records);
  const types = btfTypeSource(kernelBtf());
  const model: ReportModel = buildReportModel(memory.records, { types, lookup: ioctlByName, file: files.capture });
  await writeFile(files.report_html, renderHtml(model));

  const m = score.misaligned;
  const c = score.cacheline_cross;
  const tp = m.tp + c.tp;
  const fp = m.fp + c.fp;
  const fn = m.fn + c.fn;
  return {
    issued: gt.issued,
    captured: gt.captured,
    matched: gt.matched,
    lost: cap.summary.lost,
    flags: {
      precision: tp + fp === 0 ? 1 : tp / (tp + fp),
      recall: tp + fn === 0 ? 1 : tp / (tp + fn),
      misaligned: m,
      cacheline_cross: c,
      buffers: score.buffers,
    },
    ground_truth: gt,
    perfect: isPerfectMatch(gt),
    strategy: cap.summary.strategy,
    hooks: cap.attach.hooks,
    copies: { observed: cap.summary.flags?.observed ?? 0, derived: cap.summary.flags?.derived ?? 0, unknown: cap.summary.flags?.unknown ?? 0 },
    attach_ms: cap.attach.attachMs,
    guest: {
      vcpus: guest.vcpus,
      exits: guest.exits,
      ioctls: guest.ioctls,
      long_mode: guest.long_mode,
      elapsed_s: guest.elapsed_s,
      scenarios: guest.scenarios,
    },
    files,
    // One worst buffer per ioctl keeps the terminal summary short; the HTML report has them all.
    reportText: renderText(model, { worstPerIoctl: 1 }),
  };
}

const attachedHooks = (hooks: Record<string, HookStatus>): string => {
  const on = Object.entries(hooks).filter(([, h]) => h.attached).map(([n]) => n);
  return on.length ? `${on.join(', ')} attached` : 'none attached';
};

/** The demo's terminal output. */
export function demoText(d: DemoResult): string {
  const pct = (x: number): string => `${(x * 100).toFixed(1)}%`;
  const f = d.flags;
  const lines = [
    `kvm-trace demo: reference guest (${d.guest.scenarios.join(', ')}; ${d.guest.vcpus} vCPUs) traced with strategy ${d.strategy}, attached in ${d.attach_ms.toFixed(0)} ms`,
    `  issued ${d.issued} ioctls, captured ${d.captured}, matched ${d.matched} (same tid, request, fd, argument, return value)` +
      `${d.ground_truth.missing ? `, missing ${d.ground_truth.missing}` : ''}${d.ground_truth.mismatches.length ? `, ${d.ground_truth.mismatches.length} mismatched` : ''}`,
    `  lost records: ${d.lost}`,
    `  copied buffers: ${d.copies.observed} observed by copy hooks (${attachedHooks(d.hooks)}), ${d.copies.derived} derived from the copy rules`,
    ...d.ground_truth.kvm_run.map(
      (r) => `  kvm_run vcpu ${r.vcpu} (fd ${r.fd}): user ${r.captured_user_addr ?? '?'} ${r.ok ? '= guest’s' : `≠ guest’s ${r.issued_user_addr}`}, kernel ${r.kernel_addr ?? '?'}`,
    ),
    `  buffer flags vs ground truth (${f.buffers} placed buffers): precision ${pct(f.precision)}, recall ${pct(f.recall)}` +
      ` (misaligned ${f.misaligned.tp} tp/${f.misaligned.fp} fp/${f.misaligned.fn} fn; cache-line crossing ${f.cacheline_cross.tp} tp/${f.cacheline_cross.fp} fp/${f.cacheline_cross.fn} fn)`,
    `  ${d.perfect ? 'capture reproduces the ground truth exactly' : 'capture DIFFERS from the ground truth'}`,
    '',
    d.reportText.trimEnd(),
    '',
    `HTML report: ${d.files.report_html}`,
    `capture: ${d.files.capture}   ground truth: ${d.files.ground_truth}`,
  ];
  return lines.join('\n') + '\n';
}
