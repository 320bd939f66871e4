/**
 * Drives one vCPU through the loop scenarios, on the thread that created it: real-mode setup through
 * KVM_SET_SREGS/KVM_SET_REGS, the KVM_RUN loop, and an end-of-run check (KVM_GET_REGS: ECX reached 0, RIP
 * is just past the final HLT, BL holds the checksum of the data the VMM supplied).
 *
 * The loop is the hot path measured by `npm run bench:guest`: the exit reason comes from Vcpu.runRaw()
 * (one ioctl, one typed-array load); details are read only for the exits that need them.
 */
import { errnoValue } from '../ffi/errors.js';
import { SyscallError } from '../ffi/errors.js';
import { exitReasonName } from '../kvm/abi/ioctl-table.js';
import { KVM_EXIT, KVM_EXIT_SUBCODES } from '../kvm/abi/exit-reasons.generated.js';
import type { KvmRegs, KvmSregs } from '../kvm/abi/structs.js';
import type { Vcpu } from '../kvm/vcpu.js';
import { GuestAborted, GuestFault } from './errors.js';
import { MMIO_GPA, PORT_IN, PORT_OUT, readValue, type GuestProgram } from './programs.js';

const EINTR = errnoValue('EINTR')!;
const EXIT_IO = KVM_EXIT.IO;
const EXIT_MMIO = KVM_EXIT.MMIO;
const EXIT_HLT = KVM_EXIT.HLT;
const IO_OUT = KVM_EXIT_SUBCODES.KVM_EXIT_IO_OUT;

export interface LoopResult {
  counts: Record<string, number>;
  /** KVM_RUN calls the loop made. */
  runs: number;
  /** Wall time of the loop (first KVM_RUN to the final HLT), ns. */
  loopNs: number;
  /** Byte sums of the data the VMM supplied to PIO IN and MMIO reads (what BL must hold). */
  sums: { in: number; mmio: number };
}

/** Real-mode registers for `prog`: every GPR zero except the loop count and the port. */
export function programRegs(prog: GuestProgram, extra: Partial<KvmRegs> = {}): KvmRegs {
  const z = 0n;
  return {
    rax: z, rbx: z, rcx: BigInt(prog.ecx), rdx: BigInt(prog.port), rsi: z, rdi: z, rsp: z, rbp: z,
    r8: z, r9: z, r10: z, r11: z, r12: z, r13: z, r14: z, r15: z,
    rip: BigInt(prog.entry), rflags: 2n, // bit 1 of RFLAGS is reserved-1
    ...extra,
  };
}

/** Real-mode segments for `prog` on top of the vCPU's reset state: CS base 0, DS at the program's data. */
export function programSregs(reset: KvmSregs, prog: GuestProgram): KvmSregs {
  const s = structuredClone(reset);
  s.cs.base = 0n;
  s.cs.selector = 0;
  s.ds.base = BigInt(prog.dsBase);
  s.ds.selector = prog.dsBase >>> 4; // real mode: base = selector * 16
  if (prog.breakIdt) {
    // Flat 32-bit protected mode with an empty IDT: any exception escalates to #GP, #DF, triple fault.
    // (Real mode would not do: interrupt delivery through the IVT ignores the IDT limit here.)
    const flat = (selector: number, type: number) => ({ ...s.cs, base: 0n, limit: 0xffffffff, selector, type, present: 1, dpl: 0, db: 1, s: 1, l: 0, g: 1, avl: 0, unusable: 0 });
    s.cs = flat(0x8, 11);
    s.ds = s.es = s.fs = s.gs = s.ss = flat(0x10, 3);
    s.cr0 = (s.cr0 | 1n) & ~0x80000000n; // PE on, PG off
    s.idt = { ...s.idt, base: 0n, limit: 0 };
  }
  return s;
}

/** Run `prog` (already loaded in guest RAM) to its final HLT and check the end state. */
export function runProgram(vcpu: Vcpu, reset: KvmSregs, prog: GuestProgram, stop: Int32Array): LoopResult {
  vcpu.setSregs(programSregs(reset, prog));
  vcpu.setRegs(programRegs(prog));
  const res = runLoop(vcpu, prog, stop);
  checkEndState(vcpu, prog, vcpu.getRegs(), res);
  return res;
}

/** The KVM_RUN loop: until the program's last HLT; any exit it cannot make is a GuestFault. */
export function runLoop(vcpu: Vcpu, prog: GuestProgram, stop: Int32Array): LoopResult {
  const run = vcpu.kvmRun;
  const bytes = run.bytes;
  const dv = run.dv;
  const L = run.layout;
  const id = vcpu.id;
  const wantHlt = prog.expect.HLT;
  let io = 0, mmio = 0, hlt = 0, intr = 0, reads = 0, inSum = 0, mmioSum = 0, runs = 0;
  const fault = (msg: string): GuestFault =>
    new GuestFault(id, prog.scenario, `${msg} after ${io + mmio + hlt} exits`, run.exitDetails());
  const t0 = process.hrtime.bigint();
  for (;;) {
    if (stop[0] !== 0) throw new GuestAborted();
    const r = vcpu.runRaw();
    runs++;
    if (r === EXIT_IO) {
      io++;
      const port = dv.getUint16(L.io.port, true);
      if (bytes[L.io.direction] === IO_OUT) {
        if (port !== PORT_OUT) throw fault(`unexpected OUT to port 0x${port.toString(16)}`);
      } else {
        if (port !== PORT_IN) throw fault(`unexpected IN from port 0x${port.toString(16)}`);
        const v = readValue(id, reads++);
        bytes[Number(dv.getBigUint64(L.io.dataOffset, true))] = v;
        inSum += v;
      }
    } else if (r === EXIT_MMIO) {
      mmio++;
      if (dv.getBigUint64(L.mmio.physAddr, true) !== BigInt(MMIO_GPA)) throw fault('MMIO at an unexpected address');
      if (bytes[L.mmio.isWrite] === 0) {
        const v = readValue(id, reads++);
        bytes[L.mmio.data] = v;
        mmioSum += v;
      }
    } else if (r === EXIT_HLT) {
      if (++hlt === wantHlt) break;
    } else if (r === -EINTR) {
      intr++; // a signal landed on this thread during KVM_RUN: re-enter
    } else if (r < 0) {
      throw new SyscallError('KVM_RUN', -r);
    } else {
      throw fault(`guest fault: KVM_EXIT_${exitReasonName(r)}`);
    }
  }
  const loopNs = Number(process.hrtime.bigint() - t0);
  const counts: Record<string, number> = {};
  if (io) counts.IO = io;
  if (mmio) counts.MMIO = mmio;
  if (hlt) counts.HLT = hlt;
  if (intr) counts.INTR = intr;
  return { counts, runs, loopNs, sums: { in: inSum, mmio: mmioSum } };
}

/** The program really finished: exit counts as expected, ECX 0, RIP past the last HLT, BL = checksum. */
export function checkEndState(vcpu: Vcpu, prog: GuestProgram, regs: KvmRegs, res: LoopResult): void {
  const bad: string[] = [];
  for (const [k, n] of Object.entries(prog.expect)) if ((res.counts[k] ?? 0) !== n) bad.push(`${k} exits ${res.counts[k] ?? 0}, expected ${n}`);
  if ((regs.rcx & 0xffffffffn) !== 0n) bad.push(`ECX ${regs.rcx & 0xffffffffn}, expected 0`);
  if (regs.rip !== BigInt(prog.end)) bad.push(`RIP 0x${regs.rip.toString(16)}, expected 0x${prog.end.toString(16)}`);
  if (prog.checksum) {
    const want = res.sums[prog.checksum] & 0xff;
    const bl = Number(regs.rbx & 0xffn);
    if (bl !== want) bad.push(`BL 0x${bl.toString(16)}, expected checksum 0x${want.toString(16)}`);
  }
  if (bad.length) throw new GuestFault(vcpu.id, prog.scenario, `end-of-run check failed: ${bad.join('; ')}`);
}
