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
  findVmlinuxBtfId,
  libbpfUnavailable,
  linkCreateRaw,
  probeMapType,
  probeProgType,
  progLoadRaw,
} from '../ffi/libbpf.js';
import { tracefsDir, tracepointExists } from './tracefs.js';

export type FeatureStatus = 'available' | 'unsupported' | 'inconclusive';
export interface FeatureAnswer {
  status: FeatureStatus;
  /** One line: what was tried and what the kernel said. */
  detail: string;
}
export type FeatureName = 'libbpf' | 'btf' | 'ringbuf' | 'task_storage' | 'tracepoint' | 'kprobe' | 'fentry';

export const VMLINUX_BTF = '/sys/kernel/btf/vmlinux';
const KPROBE_PMU = '/sys/bus/event_source/devices/kprobe/type';
/** `r0 = 0; exit`: the smallest program every type accepts. */
const RETURN_ZERO = Buffer.from('b700000000000000' + '9500000000000000', 'hex');
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
    const target = '_copy_from_user';
    const id = findVmlinuxBtfId(target, BPF_ATTACH_TYPE.TRACE_FENTRY);
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
      if (link < 0) return unsupported(`fentry programs load but attaching one failed: ${errText(link)}`);
      close(link);
      return available(`a 2-instruction fentry program on ${target} loads and attaches`);
    } finally {
      close(fd);
    }
  },
};

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
