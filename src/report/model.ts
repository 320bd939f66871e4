/**
 * The one report model. `kvm-trace report` builds it from a record stream in a single pass and the text,
 * JSON and HTML renderers only draw it, so the three formats cannot disagree on a count. Memory is bounded
 * by what the trace names (ioctl names, vCPUs, exit reasons), not by its length: latencies go into
 * histograms, worst examples are a fixed-size top list, leaked fds a capped list.
 *
 * Buffer flags are taken from the records when the capture attached them, otherwise derived here with the
 * same analysis (src/analysis/flags.ts) when the kernel's BTF is at hand.
 */
import type { BufferFlag, IoctlRecord, KvmRunRecord, TraceRecord } from '../decode/records.js';
import { DurationHistogram } from '../decode/histogram.js';
import { FlagAnalyzer, type IoctlLookup } from '../analysis/flags.js';
import { kvmRunBlocks, kvmRunLines, lineAddresses, type RunField } from '../analysis/kvm-run-lines.js';
import { DEFAULT_LINE_SIZE } from '../analysis/cacheline.js';
import type { StructLayout } from '../btf/layout.js';
import type { TypeSource } from '../btf/type-source.js';
import { JsonlError, readRecords, type ReadStats } from './jsonl.js';
import { ExitPathAnalyzer } from '../analysis/exit-path.js';
import { exitPathCounts } from './exit-path-section.js';
import type { FlagExample, IoctlSummary, KvmRunMap, ReasonLines, ReportModel, RunMapReason, VcpuSummary } from './model-types.js';

export type * from './model-types.js';

export const WORST_PER_IOCTL = 5;
const LEAK_LIST_MAX = 50;

export interface ModelOptions {
  /** Kernel types (BTF) for deriving flags and the kvm_run map; without them both are left out with a note. */
  types?: TypeSource;
  lookup?: IoctlLookup;
  lineSize?: number;
  /** Label of the input in the model (the file name). */
  file?: string;
  /** Why `types` is missing, for the note. */
  typesError?: string;
}

interface IoctlAcc {
  name: string;
  calls: number;
  errors: number;
  errnos: Map<string, number>;
  copies: number;
  bytes: number;
  misaligned: number;
  cross: number;
  unknown: number;
  observed: number;
  derived: number;
  hist: DurationHistogram;
  worst: FlagExample[];
}

interface VcpuAcc {
  pid: number;
  vcpu: number;
  runs: number;
  exits: Map<string, number>;
  lines: Map<string, { lines: Set<number>; straddling: Set<string> }>;
}

const severity = (f: BufferFlag): number => (f.lines - f.min_lines) * 2 + (f.misaligned ? 1 : 0);

/** Accumulates records one at a time; `finish()` gives the model. */
export class ReportBuilder {
  private readonly ioctls = new Map<string, IoctlAcc>();
  private readonly vcpus = new Map<string, VcpuAcc>();
  private readonly runs = new Map<string, KvmRunRecord>();
  private readonly byType = new Map<string, number>();
  private readonly analyzer?: FlagAnalyzer;
  private readonly runLayout?: StructLayout;
  private readonly lineCache = new Map<string, ReturnType<typeof kvmRunLines>>();
  /** Exit reason → the distinct data/trimmed fields its exits had (PIO data extents), for the map. */
  private readonly exitFields = new Map<string, Map<string, RunField>>();
  private readonly lineSize: number;
  private flagsFromRecords = 0;
  private flagsDerived = 0;
  private hooks: ReportModel['hooks'] = null;
  private lostRecords = 0;
  private summaryLost = 0;
  /** What only the summary record carries (the kernel's counters): hardware exits; an aggregate capture's handling. */
  private fromSummary: Pick<ReportModel, 'hw_exits' | 'hw_exit_stats' | 'run_split' | 'vmm_handling'> = { hw_exits: null, hw_exit_stats: null, run_split: null, vmm_handling: null };
  private summaryFds?: { opened: number; closed: number; leaked: number };
  private fdOpen = 0;
  private fdClose = 0;
  private fdLeak = 0;
  private readonly leaked: Array<{ pid: number; fd: number; fd_kind: string }> = [];
  private capture: ReportModel['capture'] = { strategy: null, duration_s: null, events: null, unknown_ioctls: null };
  private readonly notes: string[] = [];
  private readonly exitPath = new ExitPathAnalyzer();

  constructor(private readonly opts: ModelOptions = {}) {
    this.lineSize = opts.lineSize ?? DEFAULT_LINE_SIZE;
    if (opts.types) {
      this.analyzer = new FlagAnalyzer({ types: opts.types, lookup: opts.lookup, lineSize: this.lineSize });
      this.runLayout = opts.types.struct('kvm_run');
    }
    if (!opts.types) this.notes.push(`kernel BTF not available (${opts.typesError ?? 'no type source'}): flags only where the records carry them; no kvm_run map`);
  }

  add(r: TraceRecord): void {
    this.byType.set(r.type, (this.byType.get(r.type) ?? 0) + 1);
    this.exitPath.write(r);
    switch (r.type) {
      case 'ioctl':
        this.addIoctl(r);
        break;
      case 'copy':
        this.analyzer?.analyze(r);
        break;
      case 'kvm_run':
        this.runs.set(`${r.pid}/${r.vcpu}`, { ...this.runs.get(`${r.pid}/${r.vcpu}`), ...r });
        break;
      case 'fd':
        if (r.op === 'open') this.fdOpen++;
        else if (r.op === 'close') this.fdClose++;
        else if (r.op === 'leak') {
          this.fdLeak++;
          if (this.leaked.length < LEAK_LIST_MAX) this.leaked.push({ pid: r.pid, fd: r.fd, fd_kind: r.fd_kind });
        }
        break;
      case 'lost':
        this.lostRecords += r.count;
        break;
      case 'summary':
        this.capture = {
          strategy: r.strategy ?? null,
          duration_s: typeof r.duration_s === 'number' ? r.duration_s : null,
          events: typeof r.events === 'number' ? r.events : null,
          unknown_ioctls: typeof r.unknown_ioctls === 'number' ? r.unknown_ioctls : null,
        };
        this.summaryLost = Math.max(this.summaryLost, r.lost ?? 0);
        if (r.fds) this.summaryFds = r.fds;
        this.fromSummary = {
          hw_exits: r.hw_exits ?? null,
          hw_exit_stats: r.hw_exit_stats ?? null,
          run_split: r.run_split ?? null,
          vmm_handling: r.vmm_handling ?? null,
        };
        if (r.hooks && typeof r.hooks === 'object') this.hooks = r.hooks;
        for (const k of r.kvm_run ?? []) {
          const key = `${k.pid}/${k.vcpu}`;
          this.runs.set(key, { ...k, ...this.runs.get(key) });
        }
        break;
    }
  }

  private addIoctl(r: IoctlRecord): void {
    let a = this.ioctls.get(r.name);
    if (!a) {
      a = { name: r.name, calls: 0, errors: 0, errnos: new Map(), copies: 0, bytes: 0, misaligned: 0, cross: 0, unknown: 0, observed: 0, derived: 0, hist: new DurationHistogram(), worst: [] };
      this.ioctls.set(r.name, a);
    }
    a.calls++;
    a.hist.add(r.latency_ns);
    if (r.ret < 0) {
      a.errors++;
      const e = r.errno ?? `ret ${r.ret}`;
      a.errnos.set(e, (a.errnos.get(e) ?? 0) + 1);
    }
    // Flags: the capture's when present; else derive (the analyzer also tracks memory slots and copies).
    const derived = this.analyzer?.analyze(r);
    let flags: BufferFlag[] = [];
    if (r.flags) {
      flags = r.flags;
      this.flagsFromRecords++;
    } else if (derived) {
      flags = derived.flags;
      a.unknown += derived.unknown.length;
      this.flagsDerived++;
    }
    for (const f of flags) {
      a.copies++;
      a.bytes += f.len;
      if (f.source === 'observed') a.observed++;
      else a.derived++;
      if (f.misaligned) a.misaligned++;
      if (f.cacheline_cross) a.cross++;
      if (f.misaligned || f.cacheline_cross) this.keepWorst(a, { ...f, pid: r.pid, tid: r.tid, comm: r.comm, ts_ns: r.ts_ns, arg: r.arg });
    }
    if (r.name === 'KVM_RUN' && r.vcpu !== null && r.vcpu !== undefined) this.addRun(r);
  }

  private keepWorst(a: IoctlAcc, ex: FlagExample): void {
    if (a.worst.length >= WORST_PER_IOCTL && severity(ex) <= severity(a.worst[a.worst.length - 1])) return;
    a.worst.push(ex);
    a.worst.sort((x, y) => severity(y) - severity(x) || x.ts_ns - y.ts_ns);
    if (a.worst.length > WORST_PER_IOCTL) a.worst.length = WORST_PER_IOCTL;
  }

  private addRun(r: IoctlRecord): void {
    const key = `${r.pid}/${r.vcpu}`;
    let v = this.vcpus.get(key);
    if (!v) {
      v = { pid: r.pid, vcpu: r.vcpu!, runs: 0, exits: new Map(), lines: new Map() };
      this.vcpus.set(key, v);
    }
    v.runs++;
    if (!r.exit || r.ret < 0) return;
    const reason = r.exit.reason;
    v.exits.set(reason, (v.exits.get(reason) ?? 0) + 1);
    if (!this.runLayout) return;
    const e = r.exit as Record<string, unknown>;
    const ck = `${reason}/${e.data_offset}/${e.size}/${e.count}/${e.ndata}`;
    let x = this.lineCache.get(ck);
    if (!x) {
      x = kvmRunLines(reason, this.runLayout, { lineSize: this.lineSize, exit: e });
      if (this.lineCache.size < 4096) this.lineCache.set(ck, x);
    }
    let acc = v.lines.get(reason);
    if (!acc) v.lines.set(reason, (acc = { lines: new Set(), straddling: new Set() }));
    for (const l of x.lines) acc.lines.add(l);
    for (const f of x.straddling) acc.straddling.add(f.name);
    let ef = this.exitFields.get(reason);
    if (!ef) this.exitFields.set(reason, (ef = new Map()));
    for (const f of x.fields) {
      const key = `${f.name}@${f.offset}+${f.size}`;
      if (ef.size < 64 && !ef.has(key)) ef.set(key, f);
    }
  }

  finish(stats: ReadStats = { lines: 0, records: 0, ignored: 0 }): ReportModel {
    const L = this.lineSize;
    const ioctls: IoctlSummary[] = [...this.ioctls.values()]
      .sort((x, y) => y.calls - x.calls || x.name.localeCompare(y.name))
      .map((a) => ({
        name: a.name,
        calls: a.calls,
        errors: a.errors,
        errnos: Object.fromEntries([...a.errnos].sort()),
        copies: a.copies,
        bytes_copied: a.bytes,
        misaligned: a.misaligned,
        cacheline_cross: a.cross,
        unknown_copies: a.unknown,
        observed_copies: a.observed,
        derived_copies: a.derived,
        latency: { ...a.hist.stats(), mean_ns: a.hist.count ? Math.round(a.hist.sum / a.hist.count) : 0 },
        histogram: a.hist.toJSON(),
        worst: a.worst,
      }));
    const addrLines = (base: string | null | undefined, lines: number[]): string[] => lineAddresses(base, lines, L)?.lines ?? [];
    const keys = new Set([...this.vcpus.keys(), ...this.runs.keys()]);
    const vcpus: VcpuSummary[] = [...keys]
      .map((k) => {
        const v = this.vcpus.get(k);
        const run = this.runs.get(k);
        const [pid, vcpu] = k.split('/').map(Number);
        const lines: Record<string, ReasonLines> = {};
        for (const [reason, acc] of [...(v?.lines ?? new Map())].sort(([a], [b]) => a.localeCompare(b))) {
          const ls = [...acc.lines].sort((a: number, b: number) => a - b);
          lines[reason] = { lines: ls, straddling: [...acc.straddling].sort(), kernel_lines: addrLines(run?.kernel_addr, ls), user_lines: addrLines(run?.user_addr, ls) };
        }
        return {
          pid,
          vcpu,
          kernel_addr: run?.kernel_addr ?? null,
          user_addr: run?.user_addr ?? null,
          mmap_size: run?.mmap_size ?? null,
          runs: v?.runs ?? 0,
          exits: Object.fromEntries([...(v?.exits ?? new Map())].sort(([, a], [, b]) => b - a)),
          lines,
        };
      })
      .sort((a, b) => a.pid - b.pid || a.vcpu - b.vcpu);

    const totals = {
      calls: 0, errors: 0, copies: 0, bytes_copied: 0, misaligned: 0, cacheline_cross: 0, unknown_copies: 0,
      observed_copies: 0, derived_copies: 0, exits: 0,
    };
    for (const i of ioctls) {
      totals.calls += i.calls;
      totals.errors += i.errors;
      totals.copies += i.copies;
      totals.bytes_copied += i.bytes_copied;
      totals.misaligned += i.misaligned;
      totals.cacheline_cross += i.cacheline_cross;
      totals.unknown_copies += i.unknown_copies;
      totals.observed_copies += i.observed_copies;
      totals.derived_copies += i.derived_copies;
    }
    for (const v of vcpus) for (const n of Object.values(v.exits)) totals.exits += n;

    const notes = [...this.notes];
    const fdsFromRecords = this.fdOpen + this.fdClose + this.fdLeak > 0;
    const fds = fdsFromRecords || !this.summaryFds
      ? { opened: this.fdOpen, closed: this.fdClose, leaked: this.fdLeak, leaked_list: this.leaked }
      : { ...this.summaryFds, leaked_list: [] };
    if (totals.unknown_copies > 0) notes.push(`${totals.unknown_copies} copies have a length the capture does not reveal; they are counted but not flagged`);
    const path = this.exitPath.fields();
    const flags_from = this.flagsFromRecords && this.flagsDerived ? 'mixed' : this.flagsFromRecords ? 'records' : this.flagsDerived ? 'derived' : 'none';
    return {
      kind: 'kvm-trace-report',
      version: 1,
      source: { file: this.opts.file ?? '-', lines: stats.lines, records: stats.records, ignored: stats.ignored, by_type: Object.fromEntries([...this.byType].sort()) },
      capture: this.capture,
      line_size: L,
      flags_from,
      totals,
      hooks: this.hooks,
      ioctls,
      vcpus,
      kvm_run: this.runMap(vcpus),
      fds,
      lost: Math.max(this.lostRecords, this.summaryLost),
      notes,
      exit_stats: path?.exit_stats ?? null,
      // Records first (a full capture recomputes them); an aggregate capture has only its summary's.
      vmm_handling: path?.vmm_handling ?? this.fromSummary.vmm_handling,
      hw_exits: this.fromSummary.hw_exits,
      hw_exit_stats: this.fromSummary.hw_exit_stats,
      run_split: path?.run_split ?? this.fromSummary.run_split,
    };
  }

  private runMap(vcpus: VcpuSummary[]): KvmRunMap | null {
    const run = this.runLayout;
    if (!run) return null;
    const L = this.lineSize;
    const seen = new Set<string>();
    for (const v of vcpus) for (const r of Object.keys(v.exits)) seen.add(r);
    const reasons = seen.size ? [...seen].sort() : ['HLT', 'HYPERCALL', 'IO', 'MMIO'];
    const out: Record<string, RunMapReason> = {};
    for (const reason of reasons) {
      // Lines from the exits seen (they include the PIO data); the field list from the layout alone.
      const x = kvmRunLines(reason, run, { lineSize: L });
      const lines = new Set(x.lines);
      for (const v of vcpus) for (const l of v.lines[reason]?.lines ?? []) lines.add(l);
      // Fields as the exits had them (PIO data extents, ndata-trimmed arrays), else from the layout alone.
      const seenFields = [...(this.exitFields.get(reason)?.values() ?? [])];
      const fields = seenFields.length ? seenFields : x.fields;
      out[reason] = {
        member: x.member,
        lines: [...lines].sort((a, b) => a - b),
        fields: fields.map((f) => ({ name: f.name, offset: f.offset, size: f.size, straddles: f.straddles, part: f.part })),
      };
    }
    return { size: run.size, line_size: L, rows: Math.ceil(run.size / L), blocks: kvmRunBlocks(run), reasons: out };
  }
}

/** Build the report model from records (any iterable, e.g. a parsed capture). */
export function buildReportModel(records: Iterable<TraceRecord>, opts: ModelOptions = {}): ReportModel {
  const b = new ReportBuilder(opts);
  let n = 0;
  for (const r of records) {
    b.add(r);
    n++;
  }
  return b.finish({ lines: n, records: n, ignored: 0 });
}

/** Build the report model by streaming a JSONL file (throws JsonlError on bad input). */
export async function buildReportModelFromFile(path: string, opts: ModelOptions = {}): Promise<ReportModel> {
  const b = new ReportBuilder({ file: path, ...opts });
  const stats: ReadStats = { lines: 0, records: 0, ignored: 0 };
  for await (const r of readRecords(path, stats)) {
    try {
      b.add(r);
    } catch (err) {
      // JSON that passed the record checks but not the model (a field of the wrong shape): the same one line.
      throw new JsonlError(path, stats.lines, `bad ${r.type} record: ${(err as Error).message?.split('\n')[0] ?? String(err)}`);
    }
  }
  return b.finish(stats);
}

/**
 * Every count of the model as flat key → number ("ioctl.KVM_RUN.calls", "vcpu.1234/0.exits.IO", …): what the
 * three renderings must agree on.
 */
export function reportCounts(m: ReportModel): Record<string, number> {
  const c: Record<string, number> = {
    'records': m.source.records,
    'lost': m.lost,
    'fds.opened': m.fds.opened,
    'fds.closed': m.fds.closed,
    'fds.leaked': m.fds.leaked,
  };
  for (const [k, v] of Object.entries(m.totals)) c[`total.${k}`] = v;
  for (const i of m.ioctls) {
    for (const k of ['calls', 'errors', 'copies', 'bytes_copied', 'misaligned', 'cacheline_cross', 'unknown_copies'] as const) {
      c[`ioctl.${i.name}.${k}`] = i[k];
    }
    // The copies-by-source table lists the ioctls that copied something.
    if (i.copies + i.unknown_copies > 0) {
      c[`ioctl.${i.name}.observed_copies`] = i.observed_copies;
      c[`ioctl.${i.name}.derived_copies`] = i.derived_copies;
    }
  }
  for (const v of m.vcpus) {
    c[`vcpu.${v.pid}/${v.vcpu}.runs`] = v.runs;
    for (const [r, n] of Object.entries(v.exits)) c[`vcpu.${v.pid}/${v.vcpu}.exits.${r}`] = n;
  }
  return { ...c, ...exitPathCounts(m) };
}
