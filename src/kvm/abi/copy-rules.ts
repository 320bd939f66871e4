/**
 * Which user memory the kernel copies for each KVM ioctl, derived from the decoded argument: the fixed-size
 * argument itself (copy_from_user / memdup_user for the write direction, copy_to_user for the read one) and
 * the nested buffers the handler follows (kvm_msrs entries, kvm_cpuid2 entries, irq routing entries, the
 * signal mask's sigset, the dirty-log bitmap, ONE_REG values, MSR-filter bitmaps, …).
 *
 * The rules follow what the handlers in virt/kvm/kvm_main.c (kvm_vcpu_ioctl, kvm_vm_ioctl) and
 * arch/x86/kvm/x86.c (kvm_arch_vcpu_ioctl, kvm_arch_vm_ioctl, kvm_arch_dev_ioctl, msr_io) do — not what the
 * direction bits of the number say: KVM_SET_IRQCHIP and KVM_SET_PIT are _IOR yet the kernel copies *from*
 * the user, KVM_REINJECT_CONTROL is _IO yet copies a struct, KVM_GET_DIRTY_LOG is _IOW yet writes a bitmap.
 * Sizes and member offsets come from the TypeSource (kernel BTF); nothing here is a typed-in offset.
 * Each copy also names the routine the handler copies through (copy_from_user, memdup_user, …: `via`),
 * which decides whether a copy hook can observe it; where a handler changed between kernels, the rule
 * asks the running kernel's BTF which version it is (KVM_SET_PMU_EVENT_FILTER).
 *
 * Only successful calls are derived: after a failure the errno alone does not say how far the handler got
 * (every handler validates between its copies), so claiming a copy would be a guess.
 */
import { findMember } from '../../btf/layout.js';
import { fieldNumber, parseAddr } from '../../cdata/values.js';
import { plainCopy, RuleCtx, type CopyDir, type DerivedCopy, type IoctlCall, type RuleEnv } from './copy-rule-context.js';

export type { CopyDir, CopyRoutine, DerivedCopy, IoctlCall, RuleEnv, SlotSizes } from './copy-rule-context.js';
export { plainCopy, ROUTINES_SEEN_BY, routinesSeen } from './copy-rule-context.js';

type Rule = (c: RuleCtx) => void;

const bitsPerLong = (c: RuleCtx): number => 8 * (c.env.types.type('long unsigned int')?.size ?? 8);
const alignUp = (n: number, a: number): number => Math.ceil(n / a) * a;

/**
 * KVM_GET_MSRS / KVM_SET_MSRS: msr_io() copies the 8-byte header (copy_from_user), then nmsrs entries
 * (memdup_user); GET writes them back (copy_to_user).
 */
const msrIo = (writeback: boolean): Rule => (c) => {
  c.header('kvm_msrs', 'from_user');
  const n = c.num('nmsrs');
  c.flex('kvm_msrs', 'entries', n, 'from_user', 'memdup_user');
  if (writeback) c.flex('kvm_msrs', 'entries', n, 'to_user');
};

/**
 * KVM_GET_MSR_INDEX_LIST and the feature list: header in, header (with the kernel's count) out, indices
 * out. kvm_arch_dev_ioctl() writes the index list in `pieces` copies: msrs_to_save, then emulated_msrs
 * (their split is the kernel's, not in the capture); the feature list is one copy of msr_based_features.
 */
const msrList = (pieces: number): Rule => (c) => {
  c.header('kvm_msr_list', 'from_user');
  c.header('kvm_msr_list', 'to_user');
  c.flex('kvm_msr_list', 'indices', c.num('nmsrs'), 'to_user', 'copy_to_user', pieces);
};

/** KVM_GET_SUPPORTED_CPUID & co.: header in, entries out (the kernel's nent), header out. */
const cpuidOut: Rule = (c) => {
  c.header('kvm_cpuid2', 'from_user');
  c.flex('kvm_cpuid2', 'entries', c.num('nent'), 'to_user');
  c.header('kvm_cpuid2', 'to_user');
};

/** KVM_GET_DIRTY_LOG: header in; then kvm_get_dirty_log_protect() copies ALIGN(npages, BITS_PER_LONG) / 8 bytes out. */
const getDirtyLog: Rule = (c) => {
  c.header('kvm_dirty_log', 'from_user');
  const slot = c.num('slot');
  const bitmap = parseAddr(c.args.dirty_bitmap);
  const pages = slot === undefined ? undefined : c.env.slots?.slotPages(c.call.pid, c.call.vm, slot);
  if (pages === undefined) {
    c.unknown('kvm_dirty_log.dirty_bitmap', 'to_user', bitmap ?? 0n, 'long unsigned int',
      slot === undefined ? 'slot not captured' : `size of memory slot ${slot} unknown (its KVM_SET_USER_MEMORY_REGION was not captured)`);
    return;
  }
  c.at('kvm_dirty_log.dirty_bitmap', 'to_user', bitmap, 'long unsigned int', alignUp(pages, bitsPerLong(c)) / 8);
};

/** KVM_CLEAR_DIRTY_LOG: header in, then ALIGN(num_pages, BITS_PER_LONG) / 8 bytes of bitmap in. */
const clearDirtyLog: Rule = (c) => {
  c.header('kvm_clear_dirty_log', 'from_user');
  const pages = c.num('num_pages');
  if (pages === undefined) return;
  c.at('kvm_clear_dirty_log.dirty_bitmap', 'from_user', parseAddr(c.args.dirty_bitmap), 'long unsigned int',
    alignUp(pages, bitsPerLong(c)) / 8);
};

/**
 * KVM_SET_SIGNAL_MASK: with a non-NULL argument, the 4-byte header and sizeof(sigset_t) bytes of sigset.
 * The user's buffer is kvm_signal_mask.sigset, a `__u8[]`: its alignment is the member's (1), not
 * sigset_t's (8) — the kernel copies into its own sigset_t with copy_from_user, at any user alignment.
 */
const signalMask: Rule = (c) => {
  if (c.arg === 0n) return;
  c.header('kvm_signal_mask', 'from_user');
  const s = c.struct('kvm_signal_mask');
  const m = s && findMember(s, 'sigset');
  const sigset = c.env.types.type('sigset_t');
  if (!m || !sigset) {
    c.unknown('kvm_signal_mask.sigset', 'from_user', c.arg, 'sigset_t', 'sigset_t or kvm_signal_mask.sigset not in BTF');
    return;
  }
  c.push({
    what: 'kvm_signal_mask.sigset', dir: 'from_user', addr: c.arg + BigInt(m.offset), len: sigset.size, align: m.member.align,
    type: `${m.member.typeName.replace(/\[\d*\]$/, '')}[${sigset.size}] (sigset_t)`, via: 'copy_from_user',
  });
};

/** KVM_GET/SET_ONE_REG: the 16-byte kvm_one_reg, then the value at .addr, sized by the id's KVM_REG_SIZE field. */
const oneReg = (dir: CopyDir): Rule => (c) => {
  c.header('kvm_one_reg', 'from_user');
  const id = parseAddr(c.args.id) ?? (typeof c.args.id === 'number' ? BigInt(c.args.id) : undefined);
  const addr = parseAddr(c.args.addr);
  if (id === undefined || addr === undefined) {
    c.unknown('kvm_one_reg.addr', dir, addr ?? 0n, '__u64', 'id/addr not captured');
    return;
  }
  // KVM_REG_SIZE(id) = 1 << ((id & KVM_REG_SIZE_MASK) >> KVM_REG_SIZE_SHIFT): bits 52..55 (uapi kvm.h).
  const size = 1 << Number((id >> 52n) & 0xfn);
  c.push({ what: 'kvm_one_reg.addr', dir, addr, len: size, align: Math.min(size, 8), type: `${size}-byte register`, via: plainCopy(dir) });
};

/** KVM_GET_REG_LIST: n in, n (the kernel's count) out, then n u64 ids out. */
const regList: Rule = (c) => {
  c.header('kvm_reg_list', 'from_user');
  c.header('kvm_reg_list', 'to_user');
  c.flex('kvm_reg_list', 'reg', c.num('n'), 'to_user');
};

/** KVM_{GET,SET,HAS}_DEVICE_ATTR: kvm_device_attr in; the value at .addr where its size is known on x86. */
const deviceAttr = (op: 'get' | 'set' | 'has'): Rule => (c) => {
  c.header('kvm_device_attr', 'from_user');
  if (op === 'has') return;
  const addr = parseAddr(c.args.addr);
  const group = c.num('group');
  const attr = c.num('attr');
  const dir: CopyDir = op === 'get' ? 'to_user' : 'from_user';
  // x86: /dev/kvm attributes (group 0, KVM_X86_XCOMP_GUEST_SUPP) are put_user(u64); vCPU group
  // KVM_VCPU_TSC_CTRL (0) attribute KVM_VCPU_TSC_OFFSET (0) is get_user/put_user(u64). Devices vary.
  const u64 = (c.call.fd_kind === 'system' && op === 'get' && group === 0) || (c.call.fd_kind === 'vcpu' && group === 0 && attr === 0);
  if (u64) c.at('kvm_device_attr.addr', dir, addr, '__u64', undefined, op === 'get' ? 'put_user' : 'get_user');
  else c.unknown('kvm_device_attr.addr', dir, addr ?? 0n, 'void', `attribute size depends on the device (group ${group}, attr ${attr})`);
};

/** KVM_X86_SET_MSR_FILTER: the filter, then BITS_TO_LONGS(nmsrs) longs of bitmap per non-empty range. */
const msrFilter: Rule = (c) => {
  c.whole('from_user');
  const ranges = Array.isArray(c.args.ranges) ? (c.args.ranges as Array<Record<string, unknown>>) : [];
  const long = c.env.types.type('long unsigned int')?.size ?? 8;
  ranges.forEach((r, i) => {
    const n = fieldNumber(r?.nmsrs);
    if (!n) return;
    c.at(`kvm_msr_filter.ranges[${i}].bitmap`, 'from_user', parseAddr(r.bitmap), 'long unsigned int',
      Math.ceil(n / (8 * long)) * long, 'memdup_user');
  });
};

/**
 * KVM_SET_XSAVE (memdup_user) / KVM_GET_XSAVE2 (copy_to_user) copy guest_fpu.uabi_size bytes:
 * sizeof(kvm_xsave) unless XFD features were granted.
 */
const xsaveUabi = (dir: CopyDir): Rule => (c) => {
  c.whole(dir, dir === 'from_user' ? 'memdup_user' : 'copy_to_user');
  const last = c.copies[c.copies.length - 1];
  if (last) last.assumes = 'guest_fpu.uabi_size == sizeof(struct kvm_xsave): no dynamic xfeature permission (ARCH_REQ_XCOMP_GUEST_PERM)';
};

/**
 * kvm_vm_ioctl_set_pmu_event_filter(): the header first; then, up to 6.3, header + events again in one copy
 * (struct_size(filter, events, nevents)); from 6.4 (the kernel keeps its own struct
 * kvm_x86_pmu_event_filter) only the events, at offsetof(events). Which one runs is read from the running
 * kernel's BTF, not from a version number.
 */
const pmuEventFilter: Rule = (c) => {
  c.header('kvm_pmu_event_filter', 'from_user');
  const s = c.struct('kvm_pmu_event_filter');
  const ev = s && findMember(s, 'events');
  const n = c.num('nevents');
  const u64 = c.env.types.type('__u64');
  if (!s || !ev || !u64 || n === undefined) {
    c.unknown('kvm_pmu_event_filter.events', 'from_user', c.arg, 'struct kvm_pmu_event_filter', 'nevents or the struct not known');
    return;
  }
  if (c.struct('kvm_x86_pmu_event_filter')) {
    c.flex('kvm_pmu_event_filter', 'events', n, 'from_user');
    return;
  }
  c.push({ what: 'kvm_pmu_event_filter+events', dir: 'from_user', addr: c.arg, len: ev.offset + n * u64.size, align: s.align, type: `struct kvm_pmu_event_filter + __u64[${n}]`, via: 'copy_from_user' });
};

const RULES: Record<string, Rule> = {
  KVM_RUN: () => {},
  KVM_GET_MSRS: msrIo(true),
  KVM_SET_MSRS: msrIo(false),
  KVM_GET_MSR_INDEX_LIST: msrList(2),
  KVM_GET_MSR_FEATURE_INDEX_LIST: msrList(1),
  KVM_GET_SUPPORTED_CPUID: cpuidOut,
  KVM_GET_EMULATED_CPUID: cpuidOut,
  KVM_GET_CPUID2: cpuidOut,
  KVM_GET_SUPPORTED_HV_CPUID: cpuidOut,
  // The header by copy_from_user, the entries by vmemdup_user (vmemdup_array_user on newer kernels).
  KVM_SET_CPUID2: (c) => {
    c.header('kvm_cpuid2', 'from_user');
    c.flex('kvm_cpuid2', 'entries', c.num('nent'), 'from_user', 'vmemdup_user');
  },
  KVM_SET_CPUID: (c) => {
    c.header('kvm_cpuid', 'from_user');
    c.flex('kvm_cpuid', 'entries', c.num('nent'), 'from_user', 'vmemdup_user');
  },
  KVM_SET_GSI_ROUTING: (c) => {
    c.header('kvm_irq_routing', 'from_user');
    c.flex('kvm_irq_routing', 'entries', c.num('nr'), 'from_user', 'vmemdup_user');
  },
  // kvm_vcpu_ioctl / kvm_arch_vcpu_ioctl take these whole arguments with memdup_user.
  KVM_SET_REGS: (c) => c.whole('from_user', 'memdup_user'),
  KVM_SET_SREGS: (c) => c.whole('from_user', 'memdup_user'),
  KVM_SET_FPU: (c) => c.whole('from_user', 'memdup_user'),
  KVM_SET_SREGS2: (c) => c.whole('from_user', 'memdup_user'),
  KVM_SET_LAPIC: (c) => c.whole('from_user', 'memdup_user'),
  KVM_SET_XCRS: (c) => c.whole('from_user', 'memdup_user'),
  KVM_SET_SIGNAL_MASK: signalMask,
  KVM_GET_DIRTY_LOG: getDirtyLog,
  KVM_CLEAR_DIRTY_LOG: clearDirtyLog,
  KVM_GET_ONE_REG: oneReg('to_user'),
  KVM_SET_ONE_REG: oneReg('from_user'),
  KVM_GET_REG_LIST: regList,
  KVM_GET_DEVICE_ATTR: deviceAttr('get'),
  KVM_SET_DEVICE_ATTR: deviceAttr('set'),
  KVM_HAS_DEVICE_ATTR: deviceAttr('has'),
  KVM_X86_SET_MSR_FILTER: msrFilter,
  KVM_SET_PMU_EVENT_FILTER: pmuEventFilter,
  KVM_SET_XSAVE: xsaveUabi('from_user'),
  KVM_GET_XSAVE2: xsaveUabi('to_user'),
  // Direction bits that disagree with the handler: _IOR numbers whose handler copies from the user.
  KVM_SET_IRQCHIP: (c) => c.whole('from_user'),
  KVM_SET_PIT: (c) => c.whole('from_user'),
  KVM_MEMORY_ENCRYPT_REG_REGION: (c) => c.whole('from_user'),
  KVM_MEMORY_ENCRYPT_UNREG_REGION: (c) => c.whole('from_user'),
  // _IO number, yet kvm_arch_vm_ioctl copies a struct kvm_reinject_control from the argument.
  KVM_REINJECT_CONTROL: (c) => c.header('kvm_reinject_control', 'from_user'),
  // Only copied in; the _IOWR bits notwithstanding (kvm_vm_ioctl copies the struct in and returns an fd).
  KVM_CREATE_GUEST_MEMFD: (c) => c.whole('from_user'),
  KVM_GET_NESTED_STATE: (c) => {
    c.member('kvm_nested_state', 'size', 'from_user');
    c.unknown('arg', 'to_user', c.arg, 'struct kvm_nested_state', 'vendor code decides how much nested state it writes');
  },
  KVM_SET_NESTED_STATE: (c) => {
    c.header('kvm_nested_state', 'from_user');
    c.unknown('kvm_nested_state.data', 'from_user', c.arg, 'struct kvm_nested_state', 'vendor code reads the nested-state data');
  },
  KVM_MEMORY_ENCRYPT_OP: (c) =>
    c.unknown('arg', 'from_user', c.arg, 'void', 'SEV/TDX commands copy vendor-specific structures'),
};

/** By the direction bits of the number: the default for every handler that copies its fixed-size argument once. */
const byDirection: Rule = (c) => {
  const dir = c.call.dir;
  if (dir === 'write' || dir === 'readwrite') c.whole('from_user');
  if (dir === 'read' || dir === 'readwrite') c.whole('to_user');
};

/**
 * The user memory the kernel copied for one successful KVM ioctl, in the handler's order. Failed calls,
 * and calls without a user pointer, give an empty list.
 */
export function deriveCopies(call: IoctlCall, env: RuleEnv): DerivedCopy[] {
  if (copiesNothing(call)) return [];
  const arg = parseAddr(call.arg);
  if (arg === undefined) return [];
  // A NULL argument faults in copy_from_user (EFAULT): a successful call with arg 0 copied nothing, except
  // KVM_SET_SIGNAL_MASK where NULL means "no mask".
  if (arg === 0n && call.name !== 'KVM_SET_SIGNAL_MASK') return [];
  const rule = Object.hasOwn(RULES, call.name) ? RULES[call.name] : byDirection; // a name from a file may be "constructor"
  const ctx = new RuleCtx(call, arg, env);
  rule(ctx);
  return ctx.copies;
}

/**
 * True when the call certainly copied nothing, decided without parsing anything: it failed, or its argument
 * is the NULL pointer "0x0" (every KVM_RUN). deriveCopies gives [] for these; the capture's hot path asks
 * this first.
 */
export function copiesNothing(call: Pick<IoctlCall, 'ret' | 'arg' | 'name'>): boolean {
  return call.ret < 0 || (call.arg === '0x0' && call.name !== 'KVM_SET_SIGNAL_MASK');
}
