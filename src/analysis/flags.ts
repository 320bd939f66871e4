/**
 * Buffer flags for every KVM ioctl record: which user buffers the kernel copied — observed by the copy
 * hooks (kprobe/fentry on _copy_{from,to}_user, memdup_user, vmemdup_user; each attached or not on its own)
 * or derived by src/kvm/abi/copy-rules.ts — each with `misaligned` (address not a multiple of its type's
 * natural alignment, from BTF) and `cacheline_cross` (touches more cache lines than its length needs).
 *
 * Observed and derived complement each other per copy, not per call: a derived copy is replaced by the
 * observed one at its address; one whose routine an attached hook sees but that was not observed was not
 * made; every other derived copy stays (on Debian's kernels only the memdup hooks attach, so KVM_GET_MSRS's
 * header and write-back stay derived while its entries are observed).
 *
 * `flagRecord` is the pure per-record function; `FlagAnalyzer` runs it over a record stream in order,
 * keeping the little state the rules need: memory-slot sizes (for dirty-log bitmaps) and the observed
 * CopyRecords of each thread until its ioctl record arrives (copies are emitted inside the syscall, the
 * ioctl record at its exit, so they come first).
 */
import type { BufferFlag, CopyRecord, FlagSource, FlagTotals, IoctlRecord, TraceRecord } from '../decode/records.js';
import { fieldNumber, hexAddr, parseAddr } from '../cdata/values.js';
import { bufferGeometry, DEFAULT_LINE_SIZE } from './cacheline.js';
import type { TypeSource } from '../btf/type-source.js';
import { copiesNothing, type CopyRoutine, deriveCopies, type DerivedCopy, routinesSeen, ROUTINES_SEEN_BY, type SlotSizes } from '../kvm/abi/copy-rules.js';
import type { IoctlDef } from '../kvm/abi/ioctl-table.js';

export type { DerivedCopy } from '../kvm/abi/copy-rules.js';
export type { CopySourceCounts, FlagTotals } from '../decode/records.js';

/** The ioctl table by name (ioctlByName): the argument type of each call. */
export type IoctlLookup = (name: string) => IoctlDef | undefined;

export interface FlagOptions {
  types: TypeSource;
  /** Ioctl table lookup by name (argument type); without it the encoded size and an alignment of 1 are used. */
  lookup?: IoctlLookup;
  /** Cache line size in bytes; default 64 (callers pass systemLineSize() or the user's override). */
  lineSize?: number;
  pageSize?: number;
  /**
   * The copy hooks attached during the capture (kernel function names: "memdup_user", "_copy_from_user"):
   * copies through the routines they see are observed, never derived. Absent: taken per call from the
   * hooks its observed copies name.
   */
  hooks?: readonly string[];
}

export interface IoctlAnalysis {
  /** One flag per copied buffer whose length is known. */
  flags: BufferFlag[];
  /** Copies the kernel made whose length the capture does not reveal (not flagged). */
  unknown: DerivedCopy[];
  /** 'observed' when at least one flag is an observed copy, else 'derived'. */
  source: FlagSource;
}

/** The BufferFlag of one copy of known length: observed (by `hook`) or derived (through `via`). */
export function flagCopy(
  copy: Pick<DerivedCopy, 'what' | 'dir' | 'addr' | 'align'> & { len: number },
  lineSize: number,
  source: FlagSource,
  by: { hook?: string; via?: CopyRoutine } = {},
): BufferFlag {
  const g = bufferGeometry(copy.addr, copy.len, copy.align, lineSize);
  const f: BufferFlag = {
    what: copy.what,
    dir: copy.dir,
    addr: hexAddr(copy.addr),
    len: copy.len,
    align: copy.align,
    misaligned: g.misaligned,
    cacheline_cross: g.cacheline_cross,
    lines: g.lines,
    min_lines: g.min_lines,
    source,
  };
  if (by.hook !== undefined) f.hook = by.hook;
  if (by.via !== undefined) f.via = by.via;
  return f;
}

/**
 * The routines whose copies a call's observed copies prove hooked, when the capture did not say which hooks
 * were attached. A copy without a hook (a capture older than per-hook records) stands for every routine.
 */
export function routinesOf(observed: readonly CopyRecord[]): Set<CopyRoutine> {
  if (observed.some((o) => o.hook === undefined)) return new Set(Object.values(ROUTINES_SEEN_BY).flat());
  return routinesSeen(observed.map((o) => o.hook!));
}

function lookupSafe(lookup: IoctlLookup | undefined, name: string) {
  if (!lookup) return undefined;
  try {
    return lookup(name);
  } catch {
    return undefined;
  }
}

/**
 * Flags for one ioctl record. Each observed copy (CopyRecords already joined to this call) is flagged as
 * observed, labelled and typed by the derived copy at the same address and direction (or the derived
 * buffer containing it); each derived copy no observed one matched stays derived unless `seen` (the
 * routines the attached hooks observe) includes its routine — then the kernel did not make it.
 */
export function flagRecord(
  rec: IoctlRecord,
  opts: FlagOptions,
  ctx: { slots?: SlotSizes; observed?: readonly CopyRecord[]; seen?: ReadonlySet<CopyRoutine> } = {},
): IoctlAnalysis {
  const lineSize = opts.lineSize ?? DEFAULT_LINE_SIZE;
  const derived = deriveCopies(rec, { types: opts.types, ioctl: lookupSafe(opts.lookup, rec.name), slots: ctx.slots, pageSize: opts.pageSize });
  // A zero-length copy (memdup_user of 0 entries) touches no memory: nothing to flag.
  // Lengths that are not whole numbers come only from an edited file: not a copy a kernel makes.
  const observed = (ctx.observed ?? []).filter((o) => Number.isSafeInteger(o.len) && o.len > 0 && parseAddr(o.addr) !== undefined);
  const seen = ctx.seen ?? routinesOf(observed);
  const flags: BufferFlag[] = [];
  const unknown: DerivedCopy[] = [];
  const matched = new Map<DerivedCopy, BufferFlag>();
  const extra: BufferFlag[] = [];
  for (const o of observed) {
    const addr = parseAddr(o.addr)!;
    const d = derived.find((c) => c.dir === o.dir && c.addr === addr && !matched.has(c));
    // A copy no rule predicted keeps the alignment of the derived buffer containing it, else 1 (type unknown).
    const around = d ?? derived.find((c) => c.dir === o.dir && c.len !== null && addr >= c.addr && addr < c.addr + BigInt(c.len));
    const f = flagCopy({ what: around?.what ?? 'copy', dir: o.dir, addr, len: o.len, align: around?.align ?? 1 }, lineSize, 'observed', { hook: o.hook });
    if (d) matched.set(d, f);
    else extra.push(f);
  }
  for (const c of derived) {
    const f = matched.get(c);
    if (f) flags.push(f);
    else if (seen.has(c.via)) continue;
    else if (c.len === null || !Number.isFinite(c.len)) unknown.push(c);
    else flags.push(flagCopy({ ...c, len: c.len }, lineSize, 'derived', { via: c.via }));
  }
  flags.push(...extra);
  return { flags, unknown, source: observed.length > 0 ? 'observed' : 'derived' };
}

const NO_COPIES: readonly CopyRecord[] = Object.freeze([]);
/** flagRecord's answer for a call that copied nothing (shared: it is never modified). */
const NOTHING_COPIED: IoctlAnalysis = Object.freeze({ flags: Object.freeze([]) as unknown as BufferFlag[], unknown: Object.freeze([]) as unknown as DerivedCopy[], source: 'derived' });

/** Memory-slot sizes per VM, learned from successful KVM_SET_USER_MEMORY_REGION(2) records. */
export class MemorySlots implements SlotSizes {
  private readonly pages = new Map<string, number>();
  constructor(private readonly pageSize = 4096) {}

  observe(rec: IoctlRecord): void {
    if (rec.ret < 0 || !rec.name.startsWith('KVM_SET_USER_MEMORY_REGION')) return;
    const slot = fieldNumber(rec.args?.slot);
    const size = parseAddr(rec.args?.memory_size); // a number or "0x…", exact and not negative
    if (slot === undefined || size === undefined) return;
    const key = `${rec.pid}/${rec.vm}/${slot}`;
    if (size === 0n) this.pages.delete(key);
    else this.pages.set(key, Number(size / BigInt(this.pageSize)));
  }

  slotPages(pid: number, vm: number | null, slot: number): number | undefined {
    return this.pages.get(`${pid}/${vm}/${slot}`);
  }

  /** Forget the slots of process `pid` (it exited). */
  forgetProcess(pid: number): void {
    const prefix = `${pid}/`;
    for (const k of this.pages.keys()) if (k.startsWith(prefix)) this.pages.delete(k);
  }
}

/**
 * Holds observed CopyRecords per thread until that thread's ioctl record arrives, then hands over those
 * inside the call's [enter_ns, ts_ns] window. Bounded: at most `perThread` pending copies per thread, and
 * at most `threads` threads with pending copies (the oldest thread's go first); a thread's or process's
 * pending copies also go when it exits (forgetThread / forgetProcess), since no ioctl record will come.
 */
export class CopyJoiner {
  private readonly pending = new Map<number, CopyRecord[]>();
  dropped = 0;
  constructor(
    private readonly perThread = 4096,
    private readonly threads = 4096,
  ) {}

  /** Threads with pending copies. */
  get size(): number {
    return this.pending.size;
  }

  add(c: CopyRecord): void {
    let list = this.pending.get(c.tid);
    if (!list) {
      if (this.pending.size >= this.threads) this.drop(this.pending.keys().next().value!);
      this.pending.set(c.tid, (list = []));
    }
    list.push(c);
    if (list.length > this.perThread) {
      list.shift();
      this.dropped++;
    }
  }

  /** The copies of `rec`'s thread made during `rec`; copies older than the call's end are released. */
  take(rec: Pick<IoctlRecord, 'tid' | 'enter_ns' | 'ts_ns'>): readonly CopyRecord[] {
    if (this.pending.size === 0) return NO_COPIES;
    const list = this.pending.get(rec.tid);
    if (!list) return NO_COPIES;
    const inside = list.filter((c) => c.ts_ns >= rec.enter_ns && c.ts_ns <= rec.ts_ns);
    const later = list.filter((c) => c.ts_ns > rec.ts_ns);
    if (later.length) this.pending.set(rec.tid, later);
    else this.pending.delete(rec.tid);
    return inside;
  }

  /** Thread `tid` exited: its pending copies will never be joined (counted as dropped). */
  forgetThread(tid: number): void {
    this.drop(tid);
  }

  /** Process `pid` exited: the pending copies of all its threads go. */
  forgetProcess(pid: number): void {
    for (const [tid, list] of this.pending) if (list[0]?.pid === pid) this.drop(tid);
  }

  private drop(tid: number): void {
    this.dropped += this.pending.get(tid)?.length ?? 0;
    this.pending.delete(tid);
  }
}

/**
 * Runs flagRecord over a record stream in order. In a capture: `const a = analyzer.analyze(rec); if (a?.flags.length)
 * rec.flags = a.flags;` for every record (copy records included), then `analyzer.totals` for the summary.
 */
export class FlagAnalyzer {
  readonly slots: MemorySlots;
  readonly copies = new CopyJoiner();
  readonly totals: FlagTotals = { copies: 0, bytes: 0, misaligned: 0, cacheline_cross: 0, unknown: 0, observed: 0, derived: 0, by_ioctl: {} };
  private seen: ReadonlySet<CopyRoutine> | undefined;
  constructor(private readonly opts: FlagOptions) {
    this.slots = new MemorySlots(opts.pageSize);
    if (opts.hooks) this.seen = routinesSeen(opts.hooks);
  }

  /** The copy hooks that attached (kernel function names), once the tracer knows: see FlagOptions.hooks. */
  setHooks(hooks: readonly string[]): void {
    this.seen = routinesSeen(hooks);
  }

  /** A thread exited: drop what is kept for it. */
  forgetThread(tid: number): void {
    this.copies.forgetThread(tid);
  }

  /** A process exited: drop what is kept for it (pending copies, memory-slot sizes). */
  forgetProcess(pid: number): void {
    this.copies.forgetProcess(pid);
    this.slots.forgetProcess(pid);
  }

  /** Feed every record in stream order; returns the analysis for ioctl records, undefined for others. */
  analyze(rec: TraceRecord): IoctlAnalysis | undefined {
    if (rec.type === 'copy') {
      this.copies.add(rec);
      return undefined;
    }
    if (rec.type !== 'ioctl') return undefined;
    const observed = this.copies.take(rec);
    // The hot path (every KVM_RUN): nothing copied, nothing observed, no memory slot to learn.
    if (observed.length === 0 && copiesNothing(rec)) {
      this.slots.observe(rec);
      return NOTHING_COPIED;
    }
    const out = flagRecord(rec, this.opts, { slots: this.slots, observed, seen: this.seen });
    this.slots.observe(rec);
    const t = this.totals;
    if (out.flags.length === 0 && out.unknown.length === 0) return out;
    const per = (t.by_ioctl[rec.name] ??= { observed: 0, derived: 0, unknown: 0 });
    for (const f of out.flags) {
      t.copies++;
      t.bytes += f.len;
      if (f.misaligned) t.misaligned++;
      if (f.cacheline_cross) t.cacheline_cross++;
      if (f.source === 'observed') {
        t.observed++;
        per.observed++;
      } else {
        t.derived++;
        per.derived++;
      }
    }
    t.unknown += out.unknown.length;
    per.unknown += out.unknown.length;
    return out;
  }
}
