/**
 * KVM_RUN exit details from the kvm_run snapshot the BPF side copies after the call (KT_RUN_SNAP bytes:
 * header + exit union). Every offset comes from the running kernel's BTF of struct kvm_run, resolved once:
 * IO and MMIO — the hot exits — are read through precomputed offsets; every other reason decodes its exit
 * union member generically (BtfArgsDecoder), so a reason nobody special-cased still shows its fields.
 *
 *   IO:  {reason:"IO", code:2, direction:"in"|"out", size, port, count, data_offset, data?}
 *        data: for "out" only (for "in" the VMM fills it after the exit), from the bytes at
 *        kvm_run+data_offset the BPF side captured in pio_data (first 8): the little-endian value when
 *        count is 1, else the bytes as hex in memory order.
 *   MMIO: {reason:"MMIO", code:6, phys_addr:"0x…", len, is_write, data?} (data when is_write, like IO).
 *   INTERNAL_ERROR adds suberror_name; SYSTEM_EVENT adds type_name; others: the union member's fields.
 */
import type { Btf } from '../btf/index.js';
import { missingKernelType } from '../btf/kernel.js';
import type { MemberLayout, StructLayout } from '../btf/layout.js';
import { exitReasonName } from '../kvm/abi/ioctl-table.js';
import { EXIT_UNION_MEMBER as MEMBER_OF_REASON } from '../kvm/abi/exit-union.js';
import { KVM_INTERNAL_ERROR, KVM_SYSTEM_EVENT } from '../kvm/abi/exit-reasons.generated.js';
import type { ExitInfo } from './records.js';
import { bytesHex, hex64, u64n } from '../cdata/values.js';
import type { ArgsObject, BtfArgsDecoder, StructDecoder } from './btf-args.js';


/**
 * Exit codes newer than the generated table's header (Linux 6.1 uapi): their names and members, from
 * include/uapi/linux/kvm.h of later kernels (6.8+). The member is only used if this kernel's BTF has it.
 */
const NEWER_EXITS: Record<number, { name: string; member: string }> = {
  38: { name: 'LOONGARCH_IOCSR', member: 'iocsr_io' },
  39: { name: 'MEMORY_FAULT', member: 'memory_fault' },
};

const nameOf = (table: Record<string, number>): Map<number, string> => {
  const m = new Map<number, string>();
  for (const [k, v] of Object.entries(table)) if (!m.has(v)) m.set(v, k);
  return m;
};
const INTERNAL_NAMES = nameOf(KVM_INTERNAL_ERROR);
const SYSTEM_EVENT_NAMES = nameOf(KVM_SYSTEM_EVENT);


/** Little-endian value of `n` (≤ 8) bytes at `at`: a number when ≤ 6 bytes (always exact), else "0x…". */
function leValue(dv: DataView, at: number, n: number): number | string {
  if (n <= 6) {
    let v = 0;
    for (let i = n - 1; i >= 0; i--) v = v * 256 + dv.getUint8(at + i);
    return v;
  }
  let s = '';
  for (let i = n - 1; i >= 0; i--) s += dv.getUint8(at + i).toString(16).padStart(2, '0');
  return `0x${s.replace(/^0+(?=.)/, '')}`;
}

function need(l: StructLayout | undefined, name: string, what: string): MemberLayout {
  const m = l?.members.find((x) => x.name === name);
  if (!m) throw new Error(`kernel BTF: ${what} has no member ${name}`);
  return m;
}

/** Exit reasons below this are cached (KVM's are all far below it). */
const MAX_CACHED_REASON = 1024;

interface ReasonInfo {
  name: string;
  /** Generic decoder of its union member and the member's offset in kvm_run, when it has one. */
  decode?: StructDecoder;
  offset: number;
  size: number;
}

/** Decodes kvm_run snapshots; build once per BTF (all BTF lookups happen here). */
export class ExitDecoder {
  /** Offset of kvm_run.exit_reason (the record carries it too; kept for callers decoding raw snapshots). */
  readonly exitReasonOffset: number;
  private readonly io: { at: number; direction: number; size: number; port: number; count: number; dataOffset: number };
  private readonly mmio: { at: number; physAddr: number; data: number; len: number; isWrite: number };
  /** Bytes of kvm_run the IO/MMIO fast paths need. */
  private readonly ioEnd: number;
  private readonly mmioEnd: number;
  private readonly reasons = new Map<number, ReasonInfo>();
  private readonly unionMembers: Map<string, MemberLayout>;
  private readonly unionOffset: number;

  constructor(btf: Btf, private readonly args: BtfArgsDecoder) {
    const run = btf.struct('kvm_run');
    if (!run) throw new Error(btf.source.startsWith('/sys/kernel/btf/') ? missingKernelType('struct kvm_run') : `${btf.source} has no struct kvm_run`);
    this.exitReasonOffset = need(run, 'exit_reason', 'struct kvm_run').offset;
    // The exit union is the anonymous member that has an `io` member.
    const u = run.members.find((m) => m.name === '' && m.nested?.members.some((x) => x.name === 'io'));
    if (!u?.nested) throw new Error('kernel BTF: struct kvm_run has no exit union with an io member');
    this.unionOffset = u.offset;
    this.unionMembers = new Map(u.nested.members.map((m) => [m.name, m]));
    const io = this.unionMembers.get('io');
    const mmio = this.unionMembers.get('mmio');
    if (!io?.nested || !mmio?.nested) throw new Error('kernel BTF: kvm_run exit union lacks io/mmio');
    const f = (l: StructLayout, n: string): number => need(l, n, `kvm_run.${l === io.nested ? 'io' : 'mmio'}`).offset;
    this.io = {
      at: u.offset + io.offset,
      direction: f(io.nested, 'direction'),
      size: f(io.nested, 'size'),
      port: f(io.nested, 'port'),
      count: f(io.nested, 'count'),
      dataOffset: f(io.nested, 'data_offset'),
    };
    this.mmio = {
      at: u.offset + mmio.offset,
      physAddr: f(mmio.nested, 'phys_addr'),
      data: f(mmio.nested, 'data'),
      len: f(mmio.nested, 'len'),
      isWrite: f(mmio.nested, 'is_write'),
    };
    this.ioEnd = this.io.at + io.size;
    this.mmioEnd = this.mmio.at + mmio.size;
  }

  private reason(code: number): ReasonInfo {
    let r = this.reasons.get(code);
    if (!r) {
      const newer = NEWER_EXITS[code];
      let name = exitReasonName(code);
      let memberName = MEMBER_OF_REASON[name];
      if (name.startsWith('UNKNOWN_') && newer) {
        name = newer.name;
        memberName = newer.member;
      }
      const m = memberName ? this.unionMembers.get(memberName) : undefined;
      r = { name, offset: 0, size: 0 };
      if (m) {
        r.offset = this.unionOffset + m.offset;
        r.size = m.size;
        if (m.kind === 'struct' || m.kind === 'union') r.decode = this.args.forTypeId(m.typeId);
        else {
          // A scalar member (s390_reset_flags): wrap it as {<member>: value}.
          const at = r.offset;
          const mname = m.name;
          r.decode = (dv, off, len) => (len >= 8 ? { [mname]: leValue(dv, off, 8) } : { _truncated: true });
          r.offset = at;
        }
      }
      if (code < MAX_CACHED_REASON) this.reasons.set(code, r); // exit reasons are small numbers; a garbled one is not kept
    }
    return r;
  }

  /** "IO", "HLT", … for an exit code (lean mode: no details). */
  reasonName(code: number): string {
    return this.reason(code).name;
  }

  /**
   * Exit info of one KVM_RUN: `code` = kvm_run.exit_reason after the call, the snapshot at `snapOff`
   * (`snapLen` bytes, starting at kvm_run offset 0) and the 8 pio_data bytes at `pioOff`.
   */
  decode(code: number, dv: DataView, snapOff: number, snapLen: number, pioOff: number): ExitInfo {
    if (code === 2 && snapLen >= this.ioEnd) {
      const at = snapOff + this.io.at;
      const dir = dv.getUint8(at + this.io.direction);
      const size = dv.getUint8(at + this.io.size);
      const count = dv.getUint32(at + this.io.count, true);
      const e: ExitInfo = {
        reason: 'IO',
        code,
        direction: dir === 1 ? 'out' : 'in',
        size,
        port: dv.getUint16(at + this.io.port, true),
        count,
        data_offset: u64n(dv, at + this.io.dataOffset),
      };
      if (dir === 1) {
        const n = Math.min(size * count, 8);
        e.data = count === 1 ? leValue(dv, pioOff, n) : bytesHex(dv, pioOff, n);
      }
      return e;
    }
    if (code === 6 && snapLen >= this.mmioEnd) {
      const at = snapOff + this.mmio.at;
      const len = dv.getUint32(at + this.mmio.len, true);
      const isWrite = dv.getUint8(at + this.mmio.isWrite) !== 0;
      const e: ExitInfo = {
        reason: 'MMIO',
        code,
        phys_addr: hex64(dv, at + this.mmio.physAddr),
        len,
        is_write: isWrite,
      };
      if (isWrite) e.data = leValue(dv, at + this.mmio.data, Math.min(len, 8));
      return e;
    }
    const r = this.reason(code);
    const e: ExitInfo = { reason: r.name, code };
    if (r.decode && snapLen > r.offset) {
      const fields: ArgsObject = r.decode(dv, snapOff + r.offset, Math.min(r.size, snapLen - r.offset));
      Object.assign(e, fields);
      if (r.name === 'INTERNAL_ERROR' && typeof fields.suberror === 'number') {
        e.suberror_name = INTERNAL_NAMES.get(fields.suberror) ?? `UNKNOWN_${fields.suberror}`;
        // Only the first ndata words of data[] are meaningful.
        if (Array.isArray(fields.data) && typeof fields.ndata === 'number') e.data = fields.data.slice(0, fields.ndata);
      }
      if (r.name === 'SYSTEM_EVENT' && typeof fields.type === 'number') {
        e.type_name = SYSTEM_EVENT_NAMES.get(fields.type) ?? `UNKNOWN_${fields.type}`;
        if (Array.isArray(fields.data) && typeof fields.ndata === 'number') e.data = fields.data.slice(0, fields.ndata);
      }
    } else if (r.decode && snapLen <= r.offset) {
      e._truncated = true;
    }
    return e;
  }
}
