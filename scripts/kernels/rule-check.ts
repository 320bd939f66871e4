/**
 * Issue 9 item 4: the copy rules (src/kvm/abi/copy-rules.ts) checked against the copies the kernel was
 * seen making. For every successful KVM ioctl of a capture that has observed copies (CopyRecords of its
 * thread inside its [enter, exit] window):
 *   - each observed copy must be one the rules predict: same direction, address and length, each predicted
 *     copy matched at most once (so a copy made twice where the rules say once is a mismatch too);
 *   - a predicted copy of a kind that was observed somewhere in the capture (same ioctl, same buffer,
 *     same direction: so the routine it goes through is hooked) must be observed in every such call.
 * Copies through routines no hook watches are never observed and so never compared.
 */
import type { CopyRecord, IoctlRecord, TraceRecord } from '../../src/decode/records.js';
import { deriveCopies, type DerivedCopy } from '../../src/kvm/abi/copy-rules.js';
import { MemorySlots, type IoctlLookup } from '../../src/analysis/flags.js';
import type { TypeSource } from '../../src/btf/type-source.js';

export interface RuleCheck {
  /** Successful ioctl calls with at least one observed copy. */
  compared_calls: number;
  mismatches: number;
  /** One line per mismatch (the first 20). */
  details: string[];
}

const hex = (a: bigint): string => `0x${a.toString(16)}`;

function lookupSafe(lookup: IoctlLookup, name: string) {
  try {
    return lookup(name);
  } catch {
    return undefined;
  }
}

interface CallCopies {
  rec: IoctlRecord;
  observed: CopyRecord[];
  derived: DerivedCopy[];
  matched: Set<DerivedCopy>;
}

export function checkCopyRules(records: readonly TraceRecord[], env: { types: TypeSource; lookup: IoctlLookup; pageSize?: number }): RuleCheck {
  const slots = new MemorySlots(env.pageSize);
  const pending = new Map<number, CopyRecord[]>();
  const calls: CallCopies[] = [];
  const details: string[] = [];
  let mismatches = 0;
  const report = (line: string): void => {
    mismatches++;
    if (details.length < 20) details.push(line);
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
    const observed = mine.filter((c) => c.ts_ns >= r.enter_ns && c.ts_ns <= r.ts_ns);
    pending.set(r.tid, mine.filter((c) => c.ts_ns > r.ts_ns));
    if (r.ret >= 0) {
      const derived = deriveCopies(r, { types: env.types, ioctl: lookupSafe(env.lookup, r.name), slots, pageSize: env.pageSize });
      calls.push({ rec: r, observed, derived, matched: new Set() });
    }
    slots.observe(r);
  }

  // Pass 1: every observed copy is a predicted one.
  const observable = new Set<string>();
  const kindKey = (name: string, d: Pick<DerivedCopy, 'what' | 'dir'>): string => `${name}|${d.what}|${d.dir}`;
  for (const c of calls) {
    for (const o of c.observed) {
      const addr = BigInt(o.addr);
      const d = c.derived.find((x) => !c.matched.has(x) && x.dir === o.dir && x.addr === addr && x.len === o.len);
      if (d) {
        c.matched.add(d);
        observable.add(kindKey(c.rec.name, d));
        continue;
      }
      const predicted = c.derived.filter((x) => x.dir === o.dir).map((x) => `${x.what} ${x.len ?? '?'} bytes at ${hex(x.addr)}`);
      report(`${c.rec.name}: observed ${o.dir} ${o.len} bytes at ${o.addr}; rules predict ${predicted.length ? predicted.join(', ') : `no ${o.dir} copy`}`);
    }
  }
  // Pass 2: a predicted copy of an observable kind that was not seen.
  for (const c of calls) {
    for (const d of c.derived) {
      if (d.len === null || c.matched.has(d) || !observable.has(kindKey(c.rec.name, d))) continue;
      report(`${c.rec.name}: rules predict ${d.dir} ${d.what} ${d.len} bytes at ${hex(d.addr)}, not observed`);
    }
  }
  return { compared_calls: calls.filter((c) => c.observed.length > 0).length, mismatches, details };
}
