/**
 * Checks a capture against the reference guest's ground-truth log: every ioctl the guest issued must be
 * captured exactly once with the same thread, request, fd, argument and return value, and every vCPU's
 * kvm_run user address must be the one the guest mapped.
 *
 * Matching: the guest brackets each ioctl with CLOCK_MONOTONIC readings (t0, t1) and the BPF side stamps
 * syscall enter/exit with bpf_ktime_get_ns (the same clock), so a captured call belongs to a guest call
 * when tid and request agree and its enter time lies in [t0, t1]. arg, fd and ret are then compared, so a
 * decoding error shows as a mismatch rather than a miss.
 */
import type { GtIoctlRecord, GtKvmRunRecord, GtRecord } from '../guest/records.js';
import type { IoctlRecord, KvmRunRecord, TraceRecord } from '../decode/records.js';

export interface GroundTruthMismatch {
  name: string;
  tid: number;
  field: 'fd' | 'arg' | 'ret';
  issued: string | number;
  captured: string | number;
}

export interface GroundTruthMatch {
  /** ioctls the guest issued. */
  issued: number;
  /** ioctl records captured for the guest's process. */
  captured: number;
  /** issued calls captured exactly once with equal fd, arg and ret. */
  matched: number;
  /** issued calls with no captured record. */
  missing: number;
  /** issued calls with more than one captured record in their window. */
  duplicated: number;
  mismatches: GroundTruthMismatch[];
  /** captured records of the process that no issued call accounts for. */
  extra: number;
  kvm_run: Array<{ vcpu: number; fd: number; issued_user_addr: string; captured_user_addr: string | null; kernel_addr: string | null; ok: boolean }>;
}

const MAX_LISTED = 20;

export function matchGroundTruth(truth: Iterable<GtRecord>, records: Iterable<TraceRecord>, pid: number): GroundTruthMatch {
  const issued: GtIoctlRecord[] = [];
  const gtRuns: GtKvmRunRecord[] = [];
  for (const r of truth) {
    if (r.type === 'ioctl') issued.push(r);
    else if (r.type === 'kvm_run') gtRuns.push(r);
  }
  const byTid = new Map<number, IoctlRecord[]>();
  const runs: KvmRunRecord[] = [];
  let captured = 0;
  for (const r of records) {
    if (r.type === 'ioctl' && r.pid === pid) {
      captured++;
      let list = byTid.get(r.tid);
      if (!list) byTid.set(r.tid, (list = []));
      list.push(r);
    } else if (r.type === 'kvm_run' && r.pid === pid) {
      runs.push(r);
    }
  }
  for (const list of byTid.values()) list.sort((a, b) => a.enter_ns - b.enter_ns);

  const used = new Set<IoctlRecord>();
  const out: GroundTruthMatch = {
    issued: issued.length,
    captured,
    matched: 0,
    missing: 0,
    duplicated: 0,
    mismatches: [],
    extra: 0,
    kvm_run: [],
  };
  for (const g of issued) {
    const cands = window(byTid.get(g.tid) ?? [], g.t0_ns, g.t1_ns).filter((c) => c.cmd === g.cmd);
    if (cands.length === 0) {
      out.missing++;
      continue;
    }
    if (cands.length > 1) out.duplicated++;
    const c = cands[0];
    used.add(c);
    const bad = compare(g, c);
    if (bad.length === 0 && cands.length === 1) out.matched++;
    for (const m of bad) if (out.mismatches.length < MAX_LISTED) out.mismatches.push(m);
  }
  out.extra = captured - used.size;
  for (const g of gtRuns) {
    const c = runs.find((r) => r.fd === g.fd && r.user_addr === g.user_addr) ?? runs.find((r) => r.fd === g.fd);
    out.kvm_run.push({
      vcpu: g.vcpu,
      fd: g.fd,
      issued_user_addr: g.user_addr,
      captured_user_addr: c?.user_addr ?? null,
      kernel_addr: c?.kernel_addr ?? null,
      ok: c?.user_addr === g.user_addr && !!c?.kernel_addr,
    });
  }
  return out;
}

/** Records of a tid-sorted list whose enter time lies in [t0, t1] (binary search for the start). */
function window(list: IoctlRecord[], t0: number, t1: number): IoctlRecord[] {
  let lo = 0;
  let hi = list.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (list[mid].enter_ns < t0) lo = mid + 1;
    else hi = mid;
  }
  const out: IoctlRecord[] = [];
  for (let i = lo; i < list.length && list[i].enter_ns <= t1; i++) out.push(list[i]);
  return out;
}

function compare(g: GtIoctlRecord, c: IoctlRecord): GroundTruthMismatch[] {
  const bad: GroundTruthMismatch[] = [];
  const push = (field: GroundTruthMismatch['field'], issued: string | number, captured: string | number): void => {
    bad.push({ name: g.name, tid: g.tid, field, issued, captured });
  };
  if (g.fd !== c.fd) push('fd', g.fd, c.fd);
  if (BigInt(g.arg) !== BigInt(c.arg)) push('arg', g.arg, c.arg);
  if (g.ret !== c.ret) push('ret', g.ret, c.ret);
  return bad;
}

/** True when the capture reproduces the ground truth completely. */
export function isPerfectMatch(m: GroundTruthMatch): boolean {
  return m.matched === m.issued && m.missing === 0 && m.duplicated === 0 && m.mismatches.length === 0 && m.extra === 0 && m.kvm_run.every((r) => r.ok);
}
