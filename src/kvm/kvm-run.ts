/**
 * A typed view over a vCPU's mmapped `struct kvm_run` (mmap of the vCPU fd at offset 0, vcpuMmapSize
 * bytes): the exit reason and the exit details a VMM reads after KVM_RUN, and the data page PIO uses.
 *
 * Offsets come from a KvmRunLayout read from the running kernel's BTF (/sys/kernel/btf/vmlinux); only
 * where BTF is unavailable from the declaration in abi/structs.ts (C layout rules, checked against BTF by
 * test/kvm-structs.test.ts). The layout is plain data, so the main thread computes it once and hands it to
 * vCPU worker threads. The views are created once per mapping: reading the exit reason is one typed-array
 * load, which is what keeps the KVM_RUN loop fast.
 */
import type { Btf, MemberLayout, StructLayout } from '../btf/index.js';
import { kernelBtf } from '../btf/kernel.js';
import { memoryView } from '../ffi/libc.js';
import { exitReasonName } from './abi/ioctl-table.js';
import { memberAt } from '../cdata/layout.js';
import { STRUCTS } from './abi/structs.js';

/** Byte offsets of the kvm_run members kvm-trace reads or writes. */
export interface KvmRunLayout {
  /** Where the offsets came from. */
  source: 'btf' | 'declared';
  size: number;
  immediateExit: number;
  exitReason: number;
  io: { direction: number; size: number; port: number; count: number; dataOffset: number };
  mmio: { physAddr: number; data: number; len: number; isWrite: number };
  failEntry: { reason: number; cpu: number };
  internal: { suberror: number; ndata: number; data: number };
  hw: { reason: number };
  ex: { exception: number; errorCode: number };
}

/** Kernel builds rename some uapi members (HOST.md: byte 1 is `immediate_exit__unsafe` in BTF). */
const BTF_ALIASES: Record<string, string> = { immediate_exit: 'immediate_exit__unsafe' };

/** Offset of a dotted path in a BTF layout; "" segments are anonymous members. */
export function btfOffset(s: StructLayout, path: string): number {
  let rec: StructLayout | undefined = s;
  let off = 0;
  for (const part of path.split('.')) {
    const m: MemberLayout | undefined =
      rec?.members.find((x) => x.name === part) ?? rec?.members.find((x) => x.name === BTF_ALIASES[part]);
    if (!m) throw new Error(`BTF struct ${s.name} has no member ${path}`);
    off += m.offset;
    rec = m.nested;
  }
  return off;
}

function build(source: KvmRunLayout['source'], size: number, at: (path: string) => number): KvmRunLayout {
  // The exit union is an anonymous member (name ""), so its members are reached through "".
  const u = (p: string): number => at(`.${p}`);
  return {
    source,
    size,
    immediateExit: at('immediate_exit'),
    exitReason: at('exit_reason'),
    io: { direction: u('io.direction'), size: u('io.size'), port: u('io.port'), count: u('io.count'), dataOffset: u('io.data_offset') },
    mmio: { physAddr: u('mmio.phys_addr'), data: u('mmio.data'), len: u('mmio.len'), isWrite: u('mmio.is_write') },
    failEntry: { reason: u('fail_entry.hardware_entry_failure_reason'), cpu: u('fail_entry.cpu') },
    internal: { suberror: u('internal.suberror'), ndata: u('internal.ndata'), data: u('internal.data') },
    hw: { reason: u('hw.hardware_exit_reason') },
    ex: { exception: u('ex.exception'), errorCode: u('ex.error_code') },
  };
}

/** The layout from the running kernel's BTF, or null when the kernel exposes no BTF for kvm_run. */
export function kvmRunLayoutFromBtf(btf?: Btf): KvmRunLayout | null {
  let s: StructLayout | undefined;
  try {
    s = (btf ?? kernelBtf()).struct('kvm_run');
  } catch {
    return null; // no kernel BTF (CONFIG_DEBUG_INFO_BTF off) or unreadable
  }
  if (!s) return null;
  const rec = s;
  return build('btf', rec.size, (p) => btfOffset(rec, p));
}

/** The layout from the declaration in abi/structs.ts. */
export function kvmRunLayoutDeclared(): KvmRunLayout {
  const t = STRUCTS.kvm_run;
  return build('declared', t.size, (p) => memberAt(t, p).offset);
}

let cached: KvmRunLayout | null = null;

/** kvm_run's layout: from BTF when the kernel has it, else declared. Computed once per thread. */
export function kvmRunLayout(): KvmRunLayout {
  cached ??= kvmRunLayoutFromBtf() ?? kvmRunLayoutDeclared();
  return cached;
}

/** Exit details as a plain object (for errors and logs; the hot loop uses the getters). */
export interface ExitDetails {
  reason: string;
  code: number;
  [detail: string]: unknown;
}

export class KvmRun {
  /** User address of the mapping (page-aligned, from mmap). */
  readonly userAddr: bigint;
  readonly mmapSize: number;
  readonly layout: KvmRunLayout;
  /** The whole mapping, bytes and DataView (little-endian reads). */
  readonly bytes: Uint8Array;
  readonly dv: DataView;
  /** 32-bit words of the mapping; exit_reason is words[exitReasonIndex]. */
  readonly words: Uint32Array;
  readonly exitReasonIndex: number;

  constructor(userAddr: bigint, mmapSize: number, layout: KvmRunLayout = kvmRunLayout()) {
    this.userAddr = userAddr;
    this.mmapSize = mmapSize;
    this.layout = layout;
    const ab = userAddr === 0n ? new ArrayBuffer(Math.max(mmapSize, layout.size)) : memoryView(userAddr, mmapSize);
    this.bytes = new Uint8Array(ab);
    this.dv = new DataView(ab);
    this.words = new Uint32Array(ab, 0, ab.byteLength >>> 2);
    this.exitReasonIndex = layout.exitReason >>> 2;
  }

  /** kvm_run.exit_reason (KVM_EXIT_*). */
  get exitReason(): number {
    return this.words[this.exitReasonIndex];
  }
  /** kvm_run.immediate_exit: when 1, the next KVM_RUN returns EINTR at once. */
  set immediateExit(v: number) {
    this.bytes[this.layout.immediateExit] = v;
  }
  get ioDirection(): number {
    return this.bytes[this.layout.io.direction];
  }
  get ioSize(): number {
    return this.bytes[this.layout.io.size];
  }
  get ioPort(): number {
    return this.dv.getUint16(this.layout.io.port, true);
  }
  get ioCount(): number {
    return this.dv.getUint32(this.layout.io.count, true);
  }
  /** Offset of the PIO data from the start of kvm_run (the data page). */
  get ioDataOffset(): number {
    return Number(this.dv.getBigUint64(this.layout.io.dataOffset, true));
  }
  get mmioPhysAddr(): bigint {
    return this.dv.getBigUint64(this.layout.mmio.physAddr, true);
  }
  get mmioLen(): number {
    return this.dv.getUint32(this.layout.mmio.len, true);
  }
  get mmioIsWrite(): boolean {
    return this.bytes[this.layout.mmio.isWrite] !== 0;
  }
  /** Offset of mmio.data[8] in the mapping (write the bytes of an MMIO read here). */
  get mmioDataOffset(): number {
    return this.layout.mmio.data;
  }

  /** The current exit as a plain object, with the details of the exits kvm-trace's guest can see. */
  exitDetails(): ExitDetails {
    const code = this.exitReason;
    const reason = exitReasonName(code);
    const L = this.layout;
    switch (reason) {
      case 'IO':
        return { reason, code, direction: this.ioDirection === 1 ? 'out' : 'in', size: this.ioSize, port: this.ioPort, count: this.ioCount, data_offset: this.ioDataOffset };
      case 'MMIO':
        return { reason, code, phys_addr: `0x${this.mmioPhysAddr.toString(16)}`, len: this.mmioLen, is_write: this.mmioIsWrite };
      case 'FAIL_ENTRY':
        return { reason, code, hardware_entry_failure_reason: `0x${this.dv.getBigUint64(L.failEntry.reason, true).toString(16)}`, cpu: this.dv.getUint32(L.failEntry.cpu, true) };
      case 'INTERNAL_ERROR': {
        const ndata = Math.min(this.dv.getUint32(L.internal.ndata, true), 16);
        const data = Array.from({ length: ndata }, (_, i) => `0x${this.dv.getBigUint64(L.internal.data + 8 * i, true).toString(16)}`);
        return { reason, code, suberror: this.dv.getUint32(L.internal.suberror, true), data };
      }
      case 'UNKNOWN':
        return { reason, code, hardware_exit_reason: `0x${this.dv.getBigUint64(L.hw.reason, true).toString(16)}` };
      case 'EXCEPTION':
        return { reason, code, exception: this.dv.getUint32(L.ex.exception, true), error_code: this.dv.getUint32(L.ex.errorCode, true) };
      default:
        return { reason, code };
    }
  }
}
