/**
 * Feature probes, cilium/ebpf style: each answers available / unsupported / inconclusive by trying the
 * smallest real operation (create the map type, load a two-instruction program of the type, attach it,
 * look for the kernel interface it needs) — never by comparing kernel versions. Conclusive answers are
 * cached for the life of the process; inconclusive ones are asked again.
 */
import { accessSync, constants, existsSync } from 'node:fs';
import { errnoName } from '../ffi/errors.js';
import { close } from '../ffi/libc.js';
import {
  BPF_ATTACH_TYPE,
  BPF_MAP_TYPE,
  BPF_PROG_TYPE,
  libbpfUnavailable,
  linkCreateRaw,
  probeMapType,
  probeProgType,
  progLoadRaw,
} from '../ffi/libbpf.js';
import { Btf } from '../btf/index.js';
import { tracefsDir, tracepointExists } from './tracefs.js';

export type FeatureStatus = 'available' | 'unsupported' | 'inconclusive';
export interface FeatureAnswer {
  status: FeatureStatus;
  /** One line: what was tried and what the kernel said. */
  detail: string;
}
export type FeatureName = 'libbpf' | 'btf' | 'ringbuf' | 'task_storage' | 'tracepoint' | 'kprobe' | 'fentry' | 'rdonly_cast';

export const VMLINUX_BTF = '/sys/kernel/btf/vmlinux';
const KPROBE_PMU = '/sys/bus/event_source/devices/kprobe/type';
/** `r0 = 0; exit`: the smallest program every type accepts. */
const RETURN_ZERO = Buffer.from('b700000000000000' + '9500000000000000', 'hex');
/**
 * Functions the fentry probe tries to attach to, in order: any that takes one shows fentry works here.
 * memdup_user is an ftrace site on every kernel seen so far; _copy_from_user is not on Debian's 6.1/6.12
 * (fentry there gives EBUSY), which says nothing about fentry elsewhere — hooks attach one by one anyway.
 */
const FENTRY_PROBE_TARGETS = ['memdup_user', '_copy_from_user'];
const BPF_PSEUDO_KFUNC_CALL = 2;

/** One eBPF instruction (little-endian): opcode, dst/src registers, offset, immediate. */
function insn(code: number, dst: number, src: number, off: number, imm: number): Buffer {
  const b = Buffer.alloc(8);
  b.writeUInt8(code, 0);
  b.writeUInt8((src << 4) | dst, 1);
  b.writeInt16LE(off, 2);
  b.writeInt32LE(imm, 4);
  return b;
}
const ENOTSUPP = 524; // kernel-internal "not supported" some paths leak to user space

const cache = new Map<FeatureName, FeatureAnswer>();

const available = (detail: string): FeatureAnswer => ({ status: 'available', detail });
const unsupported = (detail: string): FeatureAnswer => ({ status: 'unsupported', detail });
const inconclusive = (detail: string): FeatureAnswer => ({ status: 'inconclusive', detail });

function errText(negErrno: number): string {
  const e = -negErrno;
  return e === ENOTSUPP ? 'ENOTSUPP' : errnoName(e);
}

/** libbpf_probe_* result (1 / 0 / -errno) as an answer. */
function fromProbe(what: string, r: number): FeatureAnswer {
  if (r === 1) return available(`${what}: loads`);
  if (r === 0) return unsupported(`${what}: the kernel refuses it`);
  if (r === -1 /* EPERM */) return inconclusive(`${what}: EPERM (not privileged enough to tell)`);
  return inconclusive(`${what}: ${errText(r)}`);
}

const probes: Record<FeatureName, () => FeatureAnswer> = {
  libbpf() {
    const why = libbpfUnavailable();
    return why ? unsupported(why) : available('libbpf.so.1 loaded');
  },
  btf() {
    try {
      accessSync(VMLINUX_BTF, constants.R_OK);
      return available(`${VMLINUX_BTF} readable`);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      return code === 'ENOENT'
        ? unsupported(`${VMLINUX_BTF} is missing: this kernel has no BTF (CONFIG_DEBUG_INFO_BTF)`)
        : inconclusive(`${VMLINUX_BTF}: ${code}`);
    }
  },
  ringbuf: () => fromProbe('BPF_MAP_TYPE_RINGBUF', probeMapType(BPF_MAP_TYPE.RINGBUF)),
  task_storage: () => fromProbe('BPF_MAP_TYPE_TASK_STORAGE', probeMapType(BPF_MAP_TYPE.TASK_STORAGE)),
  tracepoint() {
    const load = fromProbe('BPF_PROG_TYPE_TRACEPOINT', probeProgType(BPF_PROG_TYPE.TRACEPOINT));
    if (load.status !== 'available') return load;
    if (!tracefsDir()) return inconclusive('tracepoint programs load; tracefs is not mounted, so events cannot be checked');
    if (!tracepointExists('syscalls', 'sys_enter_ioctl')) {
      return unsupported('tracefs has no syscalls/sys_enter_ioctl event (CONFIG_FTRACE_SYSCALLS is not set)');
    }
    return available('tracepoint programs load; syscalls:sys_enter_ioctl exists in tracefs');
  },
  kprobe() {
    const load = fromProbe('BPF_PROG_TYPE_KPROBE', probeProgType(BPF_PROG_TYPE.KPROBE));
    if (load.status !== 'available') return load;
    const dir = tracefsDir();
    if (existsSync(KPROBE_PMU) || (dir && existsSync(`${dir}/kprobe_events`))) {
      return available('kprobe programs load; the kprobe PMU / kprobe_events exists');
    }
    if (!dir) return inconclusive('kprobe programs load; no kprobe PMU, and tracefs is not mounted to check kprobe_events');
    return unsupported(
      'kprobe programs load but cannot attach: no kprobe PMU and no kprobe_events (CONFIG_KPROBES is not set)',
    );
  },
  fentry() {
    const tried: FeatureAnswer[] = [];
    for (const target of FENTRY_PROBE_TARGETS) {
      const a = probeFentryOn(target);
      if (a.status === 'available') return a;
      // Root refused the program type itself (this host: EPERM before verification): the same for every target.
      if (a.status === 'unsupported' && a.detail.includes('EPERM')) return a;
      tried.push(a);
    }
    const detail = tried.map((a) => a.detail).join('; ');
    return tried.some((a) => a.status === 'unsupported') ? unsupported(detail) : inconclusive(detail);
  },
  rdonly_cast() {
    // A tracepoint program calling bpf_rdonly_cast(NULL, <struct task_struct>): loads only where the kernel
    // has the kfunc and allows it in tracepoint programs (6.2+). The object's CO-RE fallback covers the rest.
    const btf = Btf.vmlinux();
    const fn = btf.findAllByName('bpf_rdonly_cast', 'func')[0];
    if (fn === undefined) return unsupported('no bpf_rdonly_cast kfunc in the kernel BTF (before 6.2)');
    const task = btf.findAllByName('task_struct', 'struct')[0];
    if (task === undefined) return inconclusive('no struct task_struct in the kernel BTF');
    const prog = Buffer.concat([
      insn(0xb7, 1, 0, 0, 0), // r1 = 0
      insn(0xb7, 2, 0, 0, task), // r2 = btf id of struct task_struct
      insn(0x85, 0, BPF_PSEUDO_KFUNC_CALL, 0, fn), // call bpf_rdonly_cast
      RETURN_ZERO,
    ]);
    const fd = progLoadRaw(BPF_PROG_TYPE.TRACEPOINT, 'kt_probe_cast', prog);
    if (fd >= 0) {
      close(fd);
      return available('a tracepoint program calling bpf_rdonly_cast loads');
    }
    const what = `a tracepoint program calling bpf_rdonly_cast: ${errText(fd)}`;
    return fd === -1 && process.getuid?.() !== 0 ? inconclusive(what) : unsupported(`${what} (kernel pointers are read with CO-RE reads)`);
  },
};

/**
 * The BTF id of a kernel function in vmlinux BTF (what libbpf_find_vmlinux_btf_id answers for fentry), or
 * -ENOENT. Read from the TS parse every tracer open makes anyway: libbpf's own lookup parses all of
 * vmlinux BTF again, once per call (5-25 ms each here).
 */
export function vmlinuxFuncId(name: string): number {
  return Btf.vmlinux().findAllByName(name, 'func')[0] ?? -2;
}

/** Load a 2-instruction fentry program on `target` and attach it. */
function probeFentryOn(target: string): FeatureAnswer {
  const id = vmlinuxFuncId(target);
  if (id < 0) return inconclusive(`no BTF id for ${target}: ${errText(id)}`);
  const fd = progLoadRaw(BPF_PROG_TYPE.TRACING, 'kt_probe_fentry', RETURN_ZERO, {
    expectedAttachType: BPF_ATTACH_TYPE.TRACE_FENTRY,
    attachBtfId: id,
  });
  if (fd < 0) {
    const e = -fd;
    const what = `loading a 2-instruction fentry program on ${target}: ${errText(fd)}`;
    // Root was refused: the kernel forbids the program type here (this host: EPERM before verification).
    if ((e === 1 && process.getuid?.() === 0) || e === 22 || e === 95 || e === ENOTSUPP) {
      return unsupported(`${what} (the kernel refuses fentry programs)`);
    }
    return inconclusive(what);
  }
  try {
    const link = linkCreateRaw(fd, 0, BPF_ATTACH_TYPE.TRACE_FENTRY);
    if (link < 0) return unsupported(`a fentry program on ${target} loads but attaching it failed: ${errText(link)}`);
    close(link);
    return available(`a 2-instruction fentry program on ${target} loads and attaches`);
  } finally {
    close(fd);
  }
}

/** Probe one feature (cached when the answer is conclusive). */
export function probeFeature(name: FeatureName): FeatureAnswer {
  const hit = cache.get(name);
  if (hit) return hit;
  let answer: FeatureAnswer;
  try {
    answer = name !== 'libbpf' && libbpfUnavailable() ? inconclusive(libbpfUnavailable()!) : probes[name]();
  } catch (err) {
    answer = inconclusive(`${name} probe failed: ${(err as Error).message.split('\n')[0]}`);
  }
  if (answer.status !== 'inconclusive') cache.set(name, answer);
  return answer;
}

/** Forget cached answers (tests; after mounting tracefs). */
export function clearFeatureCache(): void {
  cache.clear();
}
