/**
 * Buffer flags for every KVM ioctl record: which user buffers the kernel copied (derived by
 * src/kvm/abi/copy-rules.ts,
 * or observed by kprobe/fentry programs on the copy routines when the kernel allows them), each with
 * `misaligned` (address not a multiple of its type's natural alignment, from BTF) and `cacheline_cross`
 * (touches more cache lines than its length needs).
 *
 * `flagRecord` is the pure per-record function; `FlagAnalyzer` runs it over a record stream in order,
 * keeping the little state the rules need: memory-slot sizes (for dirty-log bitmaps) and the observed
 * CopyRecords of each thread until its ioctl record arrives (copies are emitted inside the syscall, the
 * ioctl record at its exit, so they come first).
 */
import type { BufferFlag, CopyRecord, FlagSource, IoctlRecord, TraceRecord } from '../decode/records.js';
import { fieldNumber, hexAddr, parseAddr } from '../cdata/values.js';
import { bufferGeometry, DEFAULT_LINE_SIZE } from './cacheline.js';
import type { TypeSource } from '../btf/type-source.js';
import { copiesNothing, deriveCopies, type DerivedCopy, type SlotSizes } from '../kvm/abi/copy-rules.js';
import type { IoctlDef } from '../kvm/abi/ioctl-table.js';

export type { DerivedCopy } from '../kvm/abi/copy-rules.js';

/** The ioctl table by name (ioctlByName): the argument type of each call. */
export type IoctlLookup = (name: string) => IoctlDef | undefined;

export interface FlagOptions {
  types: TypeSource;
  /** Ioctl table lookup by name (argument type); without it the encoded size and an alignment of 1 are used. */
  lookup?: IoctlLookup;
  /** Cache line size in bytes; default 64 (callers pass systemLineSize() or the user's override). */
  lineSize?: number;
  pageSize?: number;
}

export interface IoctlAnalysis {
  /** One flag per copied buffer whose length is known. */
  flags: BufferFlag[];
  /** Copies the kernel made whose length the capture does not reveal (not flagged). */
  unknown: DerivedCopy[];
  /** 'observed' when CopyRecords of the copy routines were joined to this call, else 'derived'. */
  source: FlagSource;
}

/** The BufferFlag of one copy of known length. */
export function flagCopy(copy: Pick<DerivedCopy, 'what' | 'dir' | 'addr' | 'align'> & { len: number }, lineSize: number, source: FlagSource): BufferFlag {
  const g = bufferGeometry(copy.addr, copy.len, copy.align, lineSize);
  return {
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
 * Flags for one ioctl record. With `observed` CopyRecords (already joined to this call) the flags are the
 * observed copies, labelled and typed by the derived copy at the same address and direction; otherwise the
 * derived copies.
 */
export function flagRecord(rec: IoctlRecord, opts: FlagOptions, ctx: { slots?: SlotSizes; observed?: readonly CopyRecord[] } = {}): IoctlAnalysis {
  const lineSize = opts.lineSize ?? DEFAULT_LINE_SIZE;
  const derived = deriveCopies(rec, { types: opts.types, ioctl: lookupSafe(opts.lookup, rec.name), slots: ctx.slots, pageSize: opts.pageSize });
  const observed = ctx.observed ?? [];
  if (observed.length === 0) {
    const flags: BufferFlag[] = [];
    const unknown: DerivedCopy[] = [];
    for (const c of derived) {
      if (c.len === null || !Number.isFinite(c.len)) unknown.push(c);
      else flags.push(flagCopy({ ...c, len: c.len }, lineSize, 'derived'));
    }
    return { flags, unknown, source: 'derived' };
  }
  const flags: BufferFlag[] = [];
  const matched = new Set<DerivedCopy>();
  for (const o of observed) {
    const addr = parseAddr(o.addr);
    if (addr === undefined || !Number.isSafeInteger(o.len) || o.len < 0) continue; // not a copy a kernel makes
    const d = derived.find((c) => c.dir === o.dir && c.addr === addr && !matched.has(c));
    if (d) matched.add(d);
    // A copy no rule predicted keeps the alignment of the derived buffer containing it, else 1 (type unknown).
    const around = d ?? derived.find((c) => c.len !== null && addr >= c.addr && addr < c.addr + BigInt(c.len));
    flags.push(flagCopy({ what: d?.what ?? 'copy', dir: o.dir, addr, len: o.len, align: around?.align ?? 1 }, lineSize, 'observed'));
  }
  return { flags, unknown: derived.filter((c) => c.len === null && !matched.has(c)), source: 'observed' };
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

/** Counts over every analyzed ioctl, for the capture summary. */
export interface FlagTotals {
  copies: number;
  bytes: number;
  misaligned: number;
  cacheline_cross: number;
  /** Copies whose length the capture does not reveal (not flagged). */
  unknown: number;
  observed: number;
}

/**
 * Runs flagRecord over a record stream in order. In a capture: `const a = analyzer.analyze(rec); if (a?.flags.length)
 * rec.flags = a.flags;` for every record (copy records included), then `analyzer.totals` for the summary.
 */
export class FlagAnalyzer {
  readonly slots: MemorySlots;
  readonly copies = new CopyJoiner();
  readonly totals: FlagTotals = { copies: 0, bytes: 0, misaligned: 0, cacheline_cross: 0, unknown: 0, observed: 0 };
  constructor(private readonly opts: FlagOptions) {
    this.slots = new MemorySlots(opts.pageSize);
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
    const out = flagRecord(rec, this.opts, { slots: this.slots, observed });
    this.slots.observe(rec);
    const t = this.totals;
    for (const f of out.flags) {
      t.copies++;
      t.bytes += f.len;
      if (f.misaligned) t.misaligned++;
      if (f.cacheline_cross) t.cacheline_cross++;
      if (f.source === 'observed') t.observed++;
    }
    t.unknown += out.unknown.length;
    return out;
  }
}
