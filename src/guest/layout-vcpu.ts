/**
 * The vCPU half of the `layout` scenario (runs on the vCPU's own thread): every vCPU ioctl with an
 * argument buffer is issued with the buffer at each placement (aligned, misaligned +1/+3, across a 64-byte
 * line, across a page). Set/get pairs use different placements (set at one, get at the next) and compare
 * the data; then the layout program runs from the registers set through a placed buffer and reads the
 * memory slots the VM half set through placed buffers, so the guest itself proves the kernel used them.
 */
import { STRUCTS, type KvmFpu, type KvmMsrEntry, type KvmRegs, type KvmSregs } from '../kvm/abi/structs.js';
import type { Vcpu } from '../kvm/vcpu.js';
import { GuestFault } from './errors.js';
import { dirOf, LayoutContext, markRoundtrip, type BufSpec, type LayoutObservation } from './layout-context.js';
import { PLACEMENTS, type Placement } from './placement.js';
import { LAYOUT_SLOT_COUNT, programFor, slotMarker } from './programs.js';
import type { GroundTruthRecorder } from './recorder.js';
import { programRegs, programSregs, runLoop, type LoopResult } from './vcpu-driver.js';

const S = STRUCTS;
const arg = (name: string, len: number, align: number): BufSpec[] => [{ what: 'arg', dir: dirOf(name), offset: 0, len, align }];
const next = (i: number): Placement => PLACEMENTS[(i + 1) % PLACEMENTS.length];

/** MSRs the scenario writes and reads back, when the kernel lists them (KVM_GET_MSR_INDEX_LIST). */
export const LAYOUT_MSRS = [0x174, 0x175, 0x176, 0xc0000102]; // SYSENTER_CS/ESP/EIP, KERNEL_GS_BASE
const msrValue = (index: number, i: number): bigint =>
  index === 0x174 ? BigInt(0x10 + 8 * i) : 0xffff800000001000n + BigInt(i) * 0x1110n + BigInt(index & 0xff);

export interface LayoutVcpuResult {
  observations: LayoutObservation[];
  loop: LoopResult;
}

/** Run the vCPU half; `msrs` are the LAYOUT_MSRS the kernel supports (from the main thread). */
export function layoutVcpu(vcpu: Vcpu, reset: KvmSregs, msrs: number[], rec: GroundTruthRecorder | null, stop: Int32Array): LayoutVcpuResult {
  const ctx = new LayoutContext(1024, rec, vcpu.id);
  try {
    const prog = programFor('layout', 0);
    pairs(ctx, 'REGS', S.kvm_regs.size, 8, (i) => programRegs(prog, markerRegs(vcpu.id, i)), (v, at) => vcpu.setRegs(v, at), (at) => vcpu.getRegs(at));
    const sregs = (i: number): KvmSregs => {
      const s = programSregs(reset, prog);
      s.es.selector = 0x100 + i; // distinct per placement, a valid real-mode segment
      s.es.base = BigInt((0x100 + i) << 4);
      return s;
    };
    pairs(ctx, 'SREGS', S.kvm_sregs.size, 8, sregs, (v, at) => vcpu.setSregs(v, at), (at) => vcpu.getSregs(at));
    const fpu0 = vcpu.getFpu();
    const fpu = (i: number): KvmFpu => {
      const f = structuredClone(fpu0);
      f.xmm[0] = Uint8Array.from({ length: 16 }, (_, k) => (vcpu.id * 31 + i * 16 + k) & 0xff);
      return f;
    };
    pairs(ctx, 'FPU', S.kvm_fpu.size, 8, fpu, (v, at) => vcpu.setFpu(v, at), (at) => vcpu.getFpu(at));
    const ev0 = vcpu.getVcpuEvents();
    pairs(ctx, 'VCPU_EVENTS', S.kvm_vcpu_events.size, 8, () => ev0, (v, at) => vcpu.setVcpuEvents(v, at), (at) => vcpu.getVcpuEvents(at));
    const dr0 = vcpu.getDebugregs();
    const dr = (i: number) => ({ ...dr0, db: [0, 1, 2, 3].map((k) => 0x1000n * BigInt(i + 1) + BigInt(k * 8)) });
    pairs(ctx, 'DEBUGREGS', S.kvm_debugregs.size, 8, dr, (v, at) => vcpu.setDebugregs(v, at), (at) => vcpu.getDebugregs(at));
    pairs(ctx, 'MP_STATE', S.kvm_mp_state.size, S.kvm_mp_state.align, () => 0, (v, at) => vcpu.setMpState(v, at), (at) => vcpu.getMpState(at));
    if (msrs.length) msrPairs(ctx, vcpu, msrs);
    // The last KVM_SET_REGS / KVM_SET_SREGS above left the layout program's state: run it.
    const loop = runLoop(vcpu, prog, stop);
    const at = ctx.at(PLACEMENTS[3], S.kvm_regs.size, 8);
    const { value: regs } = ctx.call('KVM_GET_REGS', PLACEMENTS[3], at, () => arg('KVM_GET_REGS', S.kvm_regs.size, 8), () => vcpu.getRegs(at));
    checkLayoutRun(vcpu.id, regs, prog.end);
    return { observations: ctx.observations, loop };
  } finally {
    ctx.close();
  }
}

/** r8..r15 carry a per-vCPU, per-placement pattern so a stale or misread buffer cannot pass. */
function markerRegs(vcpu: number, i: number): Partial<KvmRegs> {
  const m: Partial<KvmRegs> = {};
  (['r8', 'r9', 'r10', 'r11', 'r12', 'r13', 'r14', 'r15'] as const).forEach((r, k) => {
    m[r] = 0x0102030405060708n * BigInt(k + 1) + (BigInt(vcpu) << 48n) + (BigInt(i) << 56n);
  });
  return m;
}

/** For each placement i: KVM_SET_<what> at placement i, KVM_GET_<what> at placement i+1, compare. */
function pairs<T>(
  ctx: LayoutContext,
  what: string,
  len: number,
  align: number,
  value: (i: number) => T,
  set: (v: T, at: bigint) => void,
  get: (at: bigint) => T,
): void {
  const setName = `KVM_SET_${what}`;
  const getName = `KVM_GET_${what}`;
  PLACEMENTS.forEach((p, i) => {
    const v = value(i);
    const atS = ctx.at(p, len, align);
    const s = ctx.call(setName, p, atS, () => arg(setName, len, align), () => set(v, atS));
    const atG = ctx.at(next(i), len, align);
    const g = ctx.call(getName, next(i), atG, () => arg(getName, len, align), () => get(atG));
    markRoundtrip(v, g.value, s.obs, g.obs);
  });
}

/** KVM_SET_MSRS / KVM_GET_MSRS: the kvm_msrs header and its entries are two buffers, placed by the entries. */
function msrPairs(ctx: LayoutContext, vcpu: Vcpu, msrs: number[]): void {
  const head = S.kvm_msrs.size;
  const ent = S.kvm_msr_entry;
  const elen = msrs.length * ent.size;
  const bufs = (name: string, n: number): BufSpec[] => [
    { what: 'arg', dir: 'from_user', offset: 0, len: head, align: S.kvm_msrs.align },
    { what: 'kvm_msrs.entries', dir: name === 'KVM_GET_MSRS' ? 'both' : 'from_user', offset: head, len: n * ent.size, align: ent.align },
  ];
  PLACEMENTS.forEach((p, i) => {
    const want: KvmMsrEntry[] = msrs.map((index) => ({ index, reserved: 0, data: msrValue(index, i) }));
    const atS = ctx.at(p, elen, ent.align, head);
    const s = ctx.call('KVM_SET_MSRS', p, atS, () => bufs('KVM_SET_MSRS', msrs.length), () => vcpu.setMsrs(want, atS));
    const atG = ctx.at(next(i), elen, ent.align, head);
    const g = ctx.call('KVM_GET_MSRS', next(i), atG, (r) => bufs('KVM_GET_MSRS', r?.length ?? msrs.length), () => vcpu.getMsrs(msrs, atG));
    if (s.value !== msrs.length) s.obs.detail = `KVM_SET_MSRS set ${s.value ?? 0} of ${msrs.length}`;
    markRoundtrip(s.value === msrs.length ? want : [], g.value, s.obs, g.obs);
  });
}

/** BL = the sum of the slot markers: the guest read every memory slot set through a placed buffer. */
function checkLayoutRun(vcpu: number, regs: KvmRegs | undefined, end: number): void {
  if (!regs) throw new GuestFault(vcpu, 'layout', 'KVM_GET_REGS after the layout run failed');
  let want = 0;
  for (let s = 1; s <= LAYOUT_SLOT_COUNT; s++) want += slotMarker(s);
  const bl = Number(regs.rbx & 0xffn);
  if (bl !== (want & 0xff) || regs.rip !== BigInt(end)) {
    throw new GuestFault(vcpu, 'layout', `guest read BL 0x${bl.toString(16)} (want 0x${(want & 0xff).toString(16)}), RIP 0x${regs.rip.toString(16)}: memory slots set through placed buffers are not what the VMM set`);
  }
}
