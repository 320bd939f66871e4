/**
 * Precision and recall of the buffer flags against the reference guest's ground truth. The guest's `layout`
 * scenario places argument buffers on purpose and logs, per ioctl, each buffer the kernel copies with the
 * flags plain arithmetic says it must get. Each ground-truth ioctl is paired with the captured record of
 * the same thread, request number and argument (in order), and each of its buffers with the captured
 * flags at the same address and a compatible direction; a buffer with no captured flag counts as
 * predicted "not flagged". Captured flags on buffers the ground truth does not annotate are not scored.
 *
 * Records without `flags` get them derived (FlagAnalyzer) when a TypeSource is given.
 */
import type { BufferFlag, IoctlRecord, TraceRecord } from '../decode/records.js';
import { hexAddr, parseAddr } from '../cdata/values.js';
import { FlagAnalyzer, type IoctlLookup } from './flags.js';
import type { TypeSource } from '../btf/type-source.js';

/** A ground-truth buffer as the guest logs it (src/guest/records.ts GtBuffer). */
export interface TruthBuffer {
  what?: string;
  dir?: 'from_user' | 'to_user' | 'both';
  addr: string;
  len?: number;
  expected: { misaligned: boolean; cacheline_cross: boolean };
}

/** A ground-truth ioctl record (the fields scoring reads). */
export interface TruthIoctl {
  type: 'ioctl';
  tid: number;
  cmd: string;
  arg: string;
  name?: string;
  buffers?: TruthBuffer[];
}

export interface FlagScore {
  precision: number;
  recall: number;
  tp: number;
  fp: number;
  fn: number;
  tn: number;
}

export interface ScoreResult {
  misaligned: FlagScore;
  cacheline_cross: FlagScore;
  /** Ground-truth buffers scored. */
  buffers: number;
  /** Of those, how many had a captured flag at their address. */
  matched: number;
  /** Ground-truth ioctls with buffers that had no captured record. */
  missing_calls: number;
  /** Buffers without a captured flag, and every disagreement, for the report (capped). */
  mismatches: Array<{ tid: number; cmd: string; name?: string; what?: string; addr: string; expected: TruthBuffer['expected']; got: TruthBuffer['expected'] | null }>;
}

export interface ScoreOptions {
  /** To derive flags for records that carry none. */
  types?: TypeSource;
  lookup?: IoctlLookup;
  lineSize?: number;
}

const MISMATCH_CAP = 100;

const norm = (v: string): string => {
  const b = parseAddr(v);
  return b === undefined ? v.toLowerCase() : hexAddr(b);
};
const callKey = (tid: number, cmd: string, arg: string): string => `${tid}/${norm(cmd)}/${norm(arg)}`;

function score(tp: number, fp: number, fn: number, tn: number): FlagScore {
  // 0/0: nothing claimed and nothing missed is perfect precision; no expected positives is perfect recall.
  const precision = tp + fp === 0 ? (fn === 0 ? 1 : 0) : tp / (tp + fp);
  const recall = tp + fn === 0 ? 1 : tp / (tp + fn);
  return { precision, recall, tp, fp, fn, tn };
}

const dirMatches = (truth: TruthBuffer['dir'], flag: BufferFlag['dir']): boolean => !truth || truth === 'both' || truth === flag;

/** Score the captured (or derived) flags of `records` against the ground truth `groundTruth`. */
export function scoreFlags(groundTruth: Iterable<TruthIoctl | { type: string }>, records: Iterable<TraceRecord>, opts: ScoreOptions = {}): ScoreResult {
  const analyzer = opts.types ? new FlagAnalyzer({ types: opts.types, lookup: opts.lookup, lineSize: opts.lineSize }) : undefined;
  const captured = new Map<string, BufferFlag[][]>();
  for (const r of records) {
    const derived = analyzer?.analyze(r);
    if (r.type !== 'ioctl') continue;
    const flags = (r as IoctlRecord).flags ?? derived?.flags ?? [];
    const k = callKey(r.tid, r.cmd, r.arg);
    let q = captured.get(k);
    if (!q) captured.set(k, (q = []));
    q.push(flags);
  }
  const c = { misaligned: { tp: 0, fp: 0, fn: 0, tn: 0 }, cacheline_cross: { tp: 0, fp: 0, fn: 0, tn: 0 } };
  const out: ScoreResult = { misaligned: score(0, 0, 0, 0), cacheline_cross: score(0, 0, 0, 0), buffers: 0, matched: 0, missing_calls: 0, mismatches: [] };
  for (const g of groundTruth) {
    if (g.type !== 'ioctl') continue;
    const t = g as TruthIoctl;
    if (!t.buffers?.length) continue;
    const q = captured.get(callKey(t.tid, t.cmd, t.arg));
    const flags = q?.shift();
    if (!flags) out.missing_calls++;
    for (const b of t.buffers) {
      out.buffers++;
      const addr = parseAddr(b.addr);
      const hits = (flags ?? []).filter((f) => parseAddr(f.addr) === addr && dirMatches(b.dir, f.dir));
      const got = hits.length ? { misaligned: hits.some((f) => f.misaligned), cacheline_cross: hits.some((f) => f.cacheline_cross) } : null;
      if (got) out.matched++;
      for (const flag of ['misaligned', 'cacheline_cross'] as const) {
        const want = b.expected[flag];
        const have = got?.[flag] ?? false;
        const cell = c[flag];
        if (want && have) cell.tp++;
        else if (!want && have) cell.fp++;
        else if (want && !have) cell.fn++;
        else cell.tn++;
      }
      const agree = got && got.misaligned === b.expected.misaligned && got.cacheline_cross === b.expected.cacheline_cross;
      if (!agree && out.mismatches.length < MISMATCH_CAP) {
        out.mismatches.push({ tid: t.tid, cmd: t.cmd, name: t.name, what: b.what, addr: b.addr, expected: b.expected, got });
      }
    }
  }
  out.misaligned = score(c.misaligned.tp, c.misaligned.fp, c.misaligned.fn, c.misaligned.tn);
  out.cacheline_cross = score(c.cacheline_cross.tp, c.cacheline_cross.fp, c.cacheline_cross.fn, c.cacheline_cross.tn);
  return out;
}
