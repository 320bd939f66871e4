/**
 * Bookkeeping for the `layout` scenario: an mmapped, page-aligned arena in which argument buffers are
 * placed on purpose, a wrapper that issues one placed ioctl and records what the kernel did (accepted or
 * errno), the ground-truth buffers of that ioctl (attached to its log record), and the summary.
 */
import { isDeepStrictEqual } from 'node:util';
import { SyscallError } from '../ffi/errors.js';
import { MAP_ANONYMOUS, MAP_PRIVATE, mmap, munmap, PAGE_SIZE, PROT_READ, PROT_WRITE } from '../ffi/libc.js';
import { ioctlByName } from '../kvm/abi/ioctl-table.js';
import { gtBuffer, placeIn, type Placement } from './placement.js';
import type { GroundTruthRecorder } from './recorder.js';
import type { GtBuffer, PlacementIntent } from './records.js';

/** What happened to one placed ioctl. */
export interface LayoutObservation {
  ioctl: string;
  placement: string;
  intent: PlacementIntent;
  vcpu: number | null;
  addr: string;
  /** Bytes of the primary buffer (the struct, or the nested entries for flexible-array structs). */
  len: number;
  ok: boolean;
  errno: string | null;
  /** For set/get pairs and repeated reads: did the data written (or first read) come back? null: n/a. */
  roundtrip: boolean | null;
  detail?: string;
}

/** One buffer of a placed call: its name, direction, offset from the argument address, length, alignment. */
export interface BufSpec {
  what: string;
  dir: GtBuffer['dir'];
  offset: number;
  len: number;
  align: number;
}

export const dirOf = (name: string): GtBuffer['dir'] => {
  const d = ioctlByName(name).dir;
  return d === 'write' ? 'from_user' : d === 'read' ? 'to_user' : 'both';
};

export class LayoutContext {
  readonly observations: LayoutObservation[] = [];
  readonly #arena: bigint;
  readonly #size: number;
  readonly #rec: GroundTruthRecorder | null;
  readonly #vcpu: number | null;

  /** Map an arena big enough to place a `maxLen`-byte buffer across a page boundary. */
  constructor(maxLen: number, rec: GroundTruthRecorder | null, vcpu: number | null) {
    this.#size = (Math.ceil(maxLen / PAGE_SIZE) + 3) * PAGE_SIZE;
    this.#arena = mmap(0n, this.#size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    this.#rec = rec;
    this.#vcpu = vcpu;
  }

  close(): void {
    munmap(this.#arena, this.#size);
  }

  /** The argument address for placement `p` when the buffer that matters starts `offset` bytes in. */
  at(p: Placement, primaryLen: number, align: number, offset = 0): bigint {
    return placeIn(this.#arena, PAGE_SIZE, p, primaryLen, align) - BigInt(offset);
  }

  /**
   * Issue one placed ioctl through `fn`; record whether the kernel accepted it and attach the buffers the
   * kernel copies (computed after the call, as lengths can depend on the result) to its log record.
   */
  call<T>(name: string, p: Placement, at: bigint, bufs: (result: T | undefined) => BufSpec[], fn: () => T): { value: T | undefined; obs: LayoutObservation } {
    let value: T | undefined;
    let errno: string | null = null;
    try {
      value = fn();
    } catch (err) {
      if (!(err instanceof SyscallError) || err.op !== name) throw err;
      errno = err.code;
    }
    const specs = bufs(value);
    const buffers = specs.map((b) => gtBuffer(b.what, b.dir, at + BigInt(b.offset), b.len, b.align, p.intent));
    this.#rec?.annotateLast(name, buffers);
    const primary = specs.find((b) => b.what !== 'arg') ?? specs[0];
    const obs: LayoutObservation = {
      ioctl: name,
      placement: p.label,
      intent: p.intent,
      vcpu: this.#vcpu,
      addr: `0x${(at + BigInt(primary?.offset ?? 0)).toString(16)}`,
      len: primary?.len ?? 0,
      ok: errno === null,
      errno,
      roundtrip: null,
    };
    this.observations.push(obs);
    return { value, obs };
  }
}

/** Mark a set/get pair (or a repeated read) as round-tripped when `got` deep-equals `want`. */
export function markRoundtrip(want: unknown, got: unknown, ...obs: LayoutObservation[]): boolean {
  const ok = got !== undefined && isDeepStrictEqual(want, got);
  let detail: string | undefined;
  if (!ok && got && want && typeof got === 'object' && typeof want === 'object') {
    const keys = Object.keys(want).filter((k) => !isDeepStrictEqual((want as never)[k], (got as never)[k]));
    detail = `differs in ${keys.join(', ')}`;
  }
  for (const o of obs) {
    o.roundtrip = (o.roundtrip ?? true) && ok;
    if (detail) o.detail = detail;
  }
  return ok;
}

export interface IntentCounts {
  calls: number;
  accepted: number;
  roundtrips: number;
  roundtrip_ok: number;
}

/** What the layout scenario observed, over every vCPU and the VM/system calls. */
export interface LayoutSummary {
  calls: number;
  accepted: number;
  roundtrips: number;
  roundtrip_ok: number;
  by_intent: Record<PlacementIntent, IntentCounts>;
  rejected: Array<{ ioctl: string; placement: string; vcpu: number | null; errno: string | null }>;
  mismatches: Array<{ ioctl: string; placement: string; vcpu: number | null; detail?: string }>;
  /** One sentence stating what was observed. */
  verdict: string;
}

export function summarizeLayout(obs: LayoutObservation[]): LayoutSummary {
  const zero = (): IntentCounts => ({ calls: 0, accepted: 0, roundtrips: 0, roundtrip_ok: 0 });
  const by_intent: Record<PlacementIntent, IntentCounts> = { aligned: zero(), misaligned: zero(), 'line-cross': zero(), 'page-cross': zero() };
  const s: LayoutSummary = { calls: 0, accepted: 0, roundtrips: 0, roundtrip_ok: 0, by_intent, rejected: [], mismatches: [], verdict: '' };
  for (const o of obs) {
    const b = by_intent[o.intent];
    s.calls++, b.calls++;
    if (o.ok) s.accepted++, b.accepted++;
    else s.rejected.push({ ioctl: o.ioctl, placement: o.placement, vcpu: o.vcpu, errno: o.errno });
    if (o.roundtrip !== null) {
      s.roundtrips++, b.roundtrips++;
      if (o.roundtrip) s.roundtrip_ok++, b.roundtrip_ok++;
      else s.mismatches.push({ ioctl: o.ioctl, placement: o.placement, vcpu: o.vcpu, detail: o.detail });
    }
  }
  const per = (Object.entries(by_intent) as Array<[string, IntentCounts]>).map(([k, v]) => `${k} ${v.accepted}/${v.calls}`).join(', ');
  s.verdict =
    `kernel accepted ${s.accepted}/${s.calls} placed argument buffers (${per}); ` +
    `${s.roundtrip_ok}/${s.roundtrips} round trips returned the data written`;
  return s;
}
