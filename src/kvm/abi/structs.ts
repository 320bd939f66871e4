/**
 * The KVM argument structs kvm-trace itself builds, declared once in the uapi headers' member order and
 * types (linux/kvm.h, asm/kvm.h for x86_64) with the C layout DSL, so offsets follow the C rules and are
 * never typed by hand. test/kvm-structs.test.ts checks every size and member offset against the running
 * kernel's BTF: a wrong declaration here fails a test instead of corrupting a vCPU.
 *
 * Keys are C tags. Flexible arrays (kvm_msrs.entries, kvm_cpuid2.entries, kvm_msr_list.indices) are
 * zero-length arrays, as in C: the struct size is the header, the entries follow it in the same buffer.
 * (The kernel's __DECLARE_FLEX_ARRAY wraps them in an anonymous struct; offsets are the same.)
 * `char` is signed on x86_64, hence s8. kvm_run is declared here as well (header, the exit union members
 * the guest reads, sync-regs area) so code can run without BTF; src/kvm/kvm-run.ts prefers BTF offsets.
 */
import { array, s8, s32, struct, u16, u32, u64, u8, union, type RecordType } from '../../cdata/layout.js';

const kvm_regs = struct('kvm_regs', [
  ...['rax', 'rbx', 'rcx', 'rdx', 'rsi', 'rdi', 'rsp', 'rbp'].map((n): [string, typeof u64] => [n, u64]),
  ...['r8', 'r9', 'r10', 'r11', 'r12', 'r13', 'r14', 'r15'].map((n): [string, typeof u64] => [n, u64]),
  ['rip', u64],
  ['rflags', u64],
]);

const kvm_segment = struct('kvm_segment', [
  ['base', u64],
  ['limit', u32],
  ['selector', u16],
  ['type', u8],
  ['present', u8],
  ['dpl', u8],
  ['db', u8],
  ['s', u8],
  ['l', u8],
  ['g', u8],
  ['avl', u8],
  ['unusable', u8],
  ['padding', u8],
]);

const kvm_dtable = struct('kvm_dtable', [
  ['base', u64],
  ['limit', u16],
  ['padding', array(u16, 3)],
]);

/** KVM_NR_INTERRUPTS is 256: interrupt_bitmap has (256 + 63) / 64 = 4 words. */
const KVM_NR_INTERRUPTS = 256;

const kvm_sregs = struct('kvm_sregs', [
  ...['cs', 'ds', 'es', 'fs', 'gs', 'ss', 'tr', 'ldt'].map((n): [string, RecordType] => [n, kvm_segment]),
  ['gdt', kvm_dtable],
  ['idt', kvm_dtable],
  ...['cr0', 'cr2', 'cr3', 'cr4', 'cr8', 'efer', 'apic_base'].map((n): [string, typeof u64] => [n, u64]),
  ['interrupt_bitmap', array(u64, Math.floor((KVM_NR_INTERRUPTS + 63) / 64))],
]);

const kvm_userspace_memory_region = struct('kvm_userspace_memory_region', [
  ['slot', u32],
  ['flags', u32],
  ['guest_phys_addr', u64],
  ['memory_size', u64],
  ['userspace_addr', u64],
]);

const kvm_fpu = struct('kvm_fpu', [
  ['fpr', array(array(u8, 16), 8)],
  ['fcw', u16],
  ['fsw', u16],
  ['ftwx', u8],
  ['pad1', u8],
  ['last_opcode', u16],
  ['last_ip', u64],
  ['last_dp', u64],
  ['xmm', array(array(u8, 16), 16)],
  ['mxcsr', u32],
  ['pad2', u32],
]);

const kvm_msr_entry = struct('kvm_msr_entry', [
  ['index', u32],
  ['reserved', u32],
  ['data', u64],
]);
const kvm_msrs = struct('kvm_msrs', [
  ['nmsrs', u32],
  ['pad', u32],
  ['entries', array(kvm_msr_entry, 0)],
]);
const kvm_msr_list = struct('kvm_msr_list', [
  ['nmsrs', u32],
  ['indices', array(u32, 0)],
]);

const kvm_cpuid_entry2 = struct('kvm_cpuid_entry2', [
  ['function', u32],
  ['index', u32],
  ['flags', u32],
  ['eax', u32],
  ['ebx', u32],
  ['ecx', u32],
  ['edx', u32],
  ['padding', array(u32, 3)],
]);
const kvm_cpuid2 = struct('kvm_cpuid2', [
  ['nent', u32],
  ['padding', u32],
  ['entries', array(kvm_cpuid_entry2, 0)],
]);

const kvm_vcpu_events = struct('kvm_vcpu_events', [
  ['exception', struct('', [['injected', u8], ['nr', u8], ['has_error_code', u8], ['pending', u8], ['error_code', u32]])],
  ['interrupt', struct('', [['injected', u8], ['nr', u8], ['soft', u8], ['shadow', u8]])],
  ['nmi', struct('', [['injected', u8], ['pending', u8], ['masked', u8], ['pad', u8]])],
  ['sipi_vector', u32],
  ['flags', u32],
  ['smi', struct('', [['smm', u8], ['pending', u8], ['smm_inside_nmi', u8], ['latched_init', u8]])],
  ['triple_fault', struct('', [['pending', u8]])],
  ['reserved', array(u8, 26)],
  ['exception_has_payload', u8],
  ['exception_payload', u64],
]);

const kvm_debugregs = struct('kvm_debugregs', [
  ['db', array(u64, 4)],
  ['dr6', u64],
  ['dr7', u64],
  ['flags', u64],
  ['reserved', array(u64, 9)],
]);

const kvm_xcr = struct('kvm_xcr', [
  ['xcr', u32],
  ['reserved', u32],
  ['value', u64],
]);
/** KVM_MAX_XCRS is 16. */
const kvm_xcrs = struct('kvm_xcrs', [
  ['nr_xcrs', u32],
  ['flags', u32],
  ['xcrs', array(kvm_xcr, 16)],
  ['padding', array(u64, 16)],
]);

const kvm_guest_debug_arch = struct('kvm_guest_debug_arch', [['debugreg', array(u64, 8)]]);
const kvm_guest_debug = struct('kvm_guest_debug', [
  ['control', u32],
  ['pad', u32],
  ['arch', kvm_guest_debug_arch],
]);

const kvm_irq_level = struct('kvm_irq_level', [
  ['', union('', [['irq', u32], ['status', s32]])],
  ['level', u32],
]);

const kvm_pit_config = struct('kvm_pit_config', [
  ['flags', u32],
  ['pad', array(u32, 15)],
]);

const kvm_clock_data = struct('kvm_clock_data', [
  ['clock', u64],
  ['flags', u32],
  ['pad0', u32],
  ['realtime', u64],
  ['host_tsc', u64],
  ['pad', array(u32, 4)],
]);

/** KVM_APIC_REG_SIZE is 0x400. */
const kvm_lapic_state = struct('kvm_lapic_state', [['regs', array(s8, 0x400)]]);

const kvm_enable_cap = struct('kvm_enable_cap', [
  ['cap', u32],
  ['flags', u32],
  ['args', array(u64, 4)],
  ['pad', array(u8, 64)],
]);

const kvm_mp_state = struct('kvm_mp_state', [['mp_state', u32]]);

/**
 * The exit union members the guest reads; `padding` fixes the union at 256 bytes. (hypercall is left out:
 * its uapi `longmode` is `#ifndef __KERNEL__`, so kernel BTF and the header disagree about that member.)
 */
const kvm_run_exit = union('', [
  ['hw', struct('', [['hardware_exit_reason', u64]])],
  ['fail_entry', struct('', [['hardware_entry_failure_reason', u64], ['cpu', u32]])],
  ['ex', struct('', [['exception', u32], ['error_code', u32]])],
  [
    'io',
    struct('', [
      ['direction', u8],
      ['size', u8],
      ['port', u16],
      ['count', u32],
      ['data_offset', u64],
    ]),
  ],
  ['mmio', struct('', [['phys_addr', u64], ['data', array(u8, 8)], ['len', u32], ['is_write', u8]])],
  ['internal', struct('', [['suberror', u32], ['ndata', u32], ['data', array(u64, 16)]])],
  ['padding', array(s8, 256)],
]);

/** KVM's kernel build names byte 1 `immediate_exit__unsafe`; the uapi name is used here. */
const kvm_run = struct('kvm_run', [
  ['request_interrupt_window', u8],
  ['immediate_exit', u8],
  ['padding1', array(u8, 6)],
  ['exit_reason', u32],
  ['ready_for_interrupt_injection', u8],
  ['if_flag', u8],
  ['flags', u16],
  ['cr8', u64],
  ['apic_base', u64],
  ['', kvm_run_exit],
  ['kvm_valid_regs', u64],
  ['kvm_dirty_regs', u64],
  ['s', union('', [['padding', array(s8, 2048)]])],
]);

export const STRUCTS: Record<string, RecordType> = {
  kvm_regs,
  kvm_segment,
  kvm_dtable,
  kvm_sregs,
  kvm_userspace_memory_region,
  kvm_fpu,
  kvm_msr_entry,
  kvm_msrs,
  kvm_msr_list,
  kvm_cpuid_entry2,
  kvm_cpuid2,
  kvm_vcpu_events,
  kvm_debugregs,
  kvm_xcr,
  kvm_xcrs,
  kvm_guest_debug_arch,
  kvm_guest_debug,
  kvm_irq_level,
  kvm_pit_config,
  kvm_clock_data,
  kvm_lapic_state,
  kvm_enable_cap,
  kvm_mp_state,
  kvm_run,
};

/** A struct by C tag; throws for one this module does not declare (a programming error). */
export function structOf(tag: string): RecordType {
  const t = STRUCTS[tag];
  if (!t) throw new Error(`struct ${tag} is not declared in src/kvm/abi/structs.ts`);
  return t;
}

// Value shapes of the structs the handles return (layout.decode: <=32-bit ints are numbers, 64-bit bigint).
export type KvmRegs = Record<
  | 'rax' | 'rbx' | 'rcx' | 'rdx' | 'rsi' | 'rdi' | 'rsp' | 'rbp'
  | 'r8' | 'r9' | 'r10' | 'r11' | 'r12' | 'r13' | 'r14' | 'r15'
  | 'rip' | 'rflags',
  bigint
>;
export interface KvmSegment {
  base: bigint;
  limit: number;
  selector: number;
  type: number;
  present: number;
  dpl: number;
  db: number;
  s: number;
  l: number;
  g: number;
  avl: number;
  unusable: number;
  padding: number;
}
export interface KvmDtable {
  base: bigint;
  limit: number;
  padding: number[];
}
export interface KvmSregs {
  cs: KvmSegment; ds: KvmSegment; es: KvmSegment; fs: KvmSegment; gs: KvmSegment; ss: KvmSegment;
  tr: KvmSegment; ldt: KvmSegment;
  gdt: KvmDtable; idt: KvmDtable;
  cr0: bigint; cr2: bigint; cr3: bigint; cr4: bigint; cr8: bigint; efer: bigint; apic_base: bigint;
  interrupt_bitmap: bigint[];
}
export interface KvmUserspaceMemoryRegion {
  slot: number;
  flags: number;
  guest_phys_addr: bigint;
  memory_size: bigint;
  userspace_addr: bigint;
}
export interface KvmFpu {
  fpr: Uint8Array[];
  fcw: number;
  fsw: number;
  ftwx: number;
  pad1: number;
  last_opcode: number;
  last_ip: bigint;
  last_dp: bigint;
  xmm: Uint8Array[];
  mxcsr: number;
  pad2: number;
}
export interface KvmMsrEntry {
  index: number;
  reserved?: number;
  data: bigint;
}
export interface KvmCpuidEntry2 {
  function: number;
  index: number;
  flags: number;
  eax: number;
  ebx: number;
  ecx: number;
  edx: number;
  padding?: number[];
}
export interface KvmVcpuEvents {
  exception: { injected: number; nr: number; has_error_code: number; pending: number; error_code: number };
  interrupt: { injected: number; nr: number; soft: number; shadow: number };
  nmi: { injected: number; pending: number; masked: number; pad: number };
  sipi_vector: number;
  flags: number;
  smi: { smm: number; pending: number; smm_inside_nmi: number; latched_init: number };
  triple_fault: { pending: number };
  reserved: Uint8Array;
  exception_has_payload: number;
  exception_payload: bigint;
}
export interface KvmDebugregs {
  db: bigint[];
  dr6: bigint;
  dr7: bigint;
  flags: bigint;
  reserved: bigint[];
}
export interface KvmXcrs {
  nr_xcrs: number;
  flags: number;
  xcrs: Array<{ xcr: number; reserved: number; value: bigint }>;
  padding: bigint[];
}
export interface KvmClockData {
  clock: bigint;
  flags: number;
  pad0: number;
  realtime: bigint;
  host_tsc: bigint;
  pad: number[];
}
