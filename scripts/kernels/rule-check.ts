/**
 * Issue 9 item 4: the copy rules (src/kvm/abi/copy-rules.ts) checked against the copies the kernel was
 * seen making. The routines the attached copy hooks observe (the summary's `hooks`: memdup_user and
 * vmemdup_user on Debian's 6.1/6.12, _copy_{from,to}_user where those are traceable) decide what can be
 * compared. For every successful KVM ioctl of a capture:
 *   - each predicted copy through an observed routine must be observed: same direction, address and length
 *     (a copy the kernel makes in `pieces` parts: that many contiguous copies that tile it), by a hook that
 *     sees that routine;
 *   - each observed copy must be one of those predictions, used once (so a copy made twice where the rules
 *     say once is a mismatch too, and so is one the rules do not predict at all).
 * Copies through routines no attached hook sees cannot be compared; the result names those ioctls.
 */
import type { CopyRecord, IoctlRecord, TraceRecord } from '../../src/decode/records.js';
import { deriveCopies, ROUTINES_SEEN_BY, routinesSeen, type CopyRoutine, type DerivedCopy } from '../../src/kvm/abi/copy-rules.js';
import { MemorySlots, type IoctlLookup } from '../../src/analysis/flags.js';
import type { TypeSource } from '../../src/btf/type-source.js';

/** One ioctl name's comparison over the capture. */
export interface IoctlRuleCheck {
  /** Successful calls. */
  calls: number;
  /** Predicted copies through routines an attached hook observes (each compared). */
  compared: number;
  /** Copies the hooks observed in these calls. */
  observed: number;
  /** Predicted copies through routines no attached hook sees (not comparable here). */
  unobservable: number;
  /** Those routines. */
  unobservable_via: string[];
  mismatches: number;
}

export interface RuleCheck {
  /** Successful calls with at least one copy compared (predicted through a hooked routine, or observed). */
  compared_calls: number;
  mismatches: number;
  /** One line per mismatch (the first 20). */
  details: string[];
  /** The attached hooks the comparison used. */
  hooks: string[];
  by_ioctl: Record<string, IoctlRuleCheck>;
}

const hex = (a: bigint): string => `0x${a.toString(16)}`;

function lookupSafe(lookup: IoctlLookup, name: string) {
  try {
    return lookup(name);
  } catch {
    return undefined;
  }
}

/** The attached hooks from the capture's summary; without one, those the observed copies name. */
export function attachedHooksOf(records: readonly TraceRecord[]): string[] {
  const summary = records.find((r) => r.type === 'summary');
  if (summary?.hooks) return Object.entries(summary.hooks).filter(([, h]) => h.attached).map(([n]) => n);
  return [...new Set(records.flatMap((r) => (r.type === 'copy' && r.hook ? [r.hook] : [])))];
}

const sees = (hook: string | undefined, via: CopyRoutine): boolean => hook !== undefined && (ROUTINES_SEEN_BY[hook] ?? []).includes(via);

/**
 * The observed copies (in order) that make up `d`: one of the same direction, address and length, or, for a
 * copy made in pieces, `pieces` contiguous ones starting at its address whose lengths add up to its length.
 */
function matchPredicted(d: DerivedCopy, observed: readonly CopyRecord[], used: Set<CopyRecord>): CopyRecord[] | undefined {
  const free = observed.filter((o) => !used.has(o) && o.dir === d.dir);
  const pieces = d.pieces ?? 1;
  const out: CopyRecord[] = [];
  let addr = d.addr;
  let left = d.len;
  for (let i = 0; i < pieces; i++) {
    const o = free.find((x) => BigInt(x.addr) === addr && !out.includes(x));
    if (!o) return undefined;
    out.push(o);
    addr += BigInt(o.len);
    if (left !== null) left -= o.len;
  }
  return left === null || left === 0 ? out : undefined;
}

export function checkCopyRules(records: readonly TraceRecord[], env: { types: TypeSource; lookup: IoctlLookup; pageSize?: number; hooks?: string[] }): RuleCheck {
  const hooks = env.hooks ?? attachedHooksOf(records);
  const seen = routinesSeen(hooks);
  const slots = new MemorySlots(env.pageSize);
  const pending = new Map<number, CopyRecord[]>();
  const byIoctl: Record<string, IoctlRuleCheck> = {};
  const details: string[] = [];
  let mismatches = 0;
  let comparedCalls = 0;

  const check = (rec: IoctlRecord, observed: CopyRecord[]): void => {
    const derived = deriveCopies(rec, { types: env.types, ioctl: lookupSafe(env.lookup, rec.name), slots, pageSize: env.pageSize });
    const s = (byIoctl[rec.name] ??= { calls: 0, compared: 0, observed: 0, unobservable: 0, unobservable_via: [], mismatches: 0 });
    const report = (line: string): void => {
      mismatches++;
      s.mismatches++;
      if (details.length < 20) details.push(`${rec.name} (tid ${rec.tid}, arg ${rec.arg}): ${line}`);
    };
    s.calls++;
    s.observed += observed.length;
    const used = new Set<CopyRecord>();
    let compared = 0;
    for (const d of derived) {
      if (!seen.has(d.via)) {
        s.unobservable++;
        if (!s.unobservable_via.includes(d.via)) s.unobservable_via.push(d.via);
        continue;
      }
      compared++;
      const hit = matchPredicted(d, observed, used);
      if (!hit) {
        report(`rules predict ${d.dir} ${d.what} ${d.len ?? '?'} bytes at ${hex(d.addr)} via ${d.via}${d.pieces ? ` in ${d.pieces} pieces` : ''}, not observed`);
        continue;
      }
      for (const o of hit) {
        used.add(o);
        if (!sees(o.hook, d.via)) report(`${d.what} observed by ${o.hook ?? 'an unnamed hook'}, but the rules say it goes through ${d.via}`);
      }
    }
    s.compared += compared;
    for (const o of observed) {
      if (used.has(o)) continue;
      const predicted = derived.filter((x) => x.dir === o.dir).map((x) => `${x.what} ${x.len ?? '?'} bytes at ${hex(x.addr)} via ${x.via}`);
      report(`observed ${o.dir} ${o.len} bytes at ${o.addr} (${o.hook ?? 'hook?'}); rules predict ${predicted.length ? predicted.join(', ') : `no ${o.dir} copy`}`);
    }
    if (compared > 0 || observed.length > 0) comparedCalls++;
  };

  for (const r of records) {
    if (r.type === 'copy') {
      const l = pending.get(r.tid) ?? [];
      l.push(r);
      pending.set(r.tid, l);
      continue;
    }
    if (r.type !== 'ioctl') continue;
    const mine = pending.get(r.tid) ?? [];
    // A zero-length copy (memdup_user of 0 entries) copies nothing: the rules predict no copy for it.
    const observed = mine.filter((c) => c.ts_ns >= r.enter_ns && c.ts_ns <= r.ts_ns && c.len > 0);
    pending.set(r.tid, mine.filter((c) => c.ts_ns > r.ts_ns));
    if (r.ret >= 0) check(r, observed);
    slots.observe(r);
  }
  return { compared_calls: comparedCalls, mismatches, details, hooks, by_ioctl: byIoctl };
}

/** Two comparisons as one (the demo's capture and the extra ioctls' capture). */
export function mergeRuleChecks(a: RuleCheck, b: RuleCheck): RuleCheck {
  const by: Record<string, IoctlRuleCheck> = structuredClone(a.by_ioctl);
  for (const [name, s] of Object.entries(b.by_ioctl)) {
    const t = by[name];
    by[name] = t
      ? {
          calls: t.calls + s.calls,
          compared: t.compared + s.compared,
          observed: t.observed + s.observed,
          unobservable: t.unobservable + s.unobservable,
          unobservable_via: [...new Set([...t.unobservable_via, ...s.unobservable_via])],
          mismatches: t.mismatches + s.mismatches,
        }
      : structuredClone(s);
  }
  return {
    compared_calls: a.compared_calls + b.compared_calls,
    mismatches: a.mismatches + b.mismatches,
    details: [...a.details, ...b.details].slice(0, 20),
    hooks: [...new Set([...a.hooks, ...b.hooks])],
    by_ioctl: by,
  };
}

/** The matrix's wording: which ioctls were checked against observed copies, partly or wholly, and which could not be. */
export function ruleCoverage(by: Record<string, IoctlRuleCheck>): { checked: string[]; partly: string[]; unobservable: Record<string, string>; nothing: string[] } {
  const out = { checked: [] as string[], partly: [] as string[], unobservable: {} as Record<string, string>, nothing: [] as string[] };
  for (const [name, s] of Object.entries(by).sort(([a], [b]) => a.localeCompare(b))) {
    if (s.compared === 0 && s.observed === 0 && s.unobservable === 0) out.nothing.push(name);
    else if (s.compared === 0 && s.observed === 0) out.unobservable[name] = `through ${s.unobservable_via.join(', ')}, which no attached hook sees`;
    else if (s.unobservable > 0) out.partly.push(name);
    else out.checked.push(name);
  }
  return out;
}
