/**
 * Before anything is opened: can the BPF side run here at all (preflight: libbpf, root, BTF, the map types
 * it needs), and which attach strategy to use — an explicit one that cannot work is refused with the probe's
 * answer, `auto` takes the richest the feature probes allow — and how the object reads kernel pointers.
 */
import { NotSupportedError, SyscallError } from '../ffi/errors.js';
import { Btf } from '../btf/index.js';
import { probeFeature } from './features.js';
import { AUTO_ORDER, type Strategy, type StrategyOption } from './programs.js';

export interface StrategyChoice {
  strategy: Strategy;
  /** Why: the feature probes' answers, one line. */
  reason: string;
}

/** Throws NotSupportedError / SyscallError(EPERM) with one line when the BPF side cannot run here. */
export function preflight(): void {
  const lib = probeFeature('libbpf');
  if (lib.status === 'unsupported') throw new NotSupportedError(lib.detail);
  if (process.getuid?.() !== 0) {
    throw new SyscallError('bpf', 1 /* EPERM */, 'kvm-trace must run as root to load BPF programs');
  }
  const btf = probeFeature('btf');
  if (btf.status !== 'available') throw new NotSupportedError(btf.detail);
  for (const need of ['ringbuf', 'task_storage'] as const) {
    const a = probeFeature(need);
    if (a.status === 'unsupported') throw new NotSupportedError(`kvm-trace needs ${a.detail}`);
  }
}

/** The strategy to use: an explicit one that cannot work is a NotSupportedError; auto takes the richest. */
export function chooseStrategy(requested: StrategyOption): StrategyChoice {
  if (requested !== 'auto') {
    const a = probeFeature(requested);
    if (a.status === 'unsupported') throw new NotSupportedError(`strategy ${requested} is not available here: ${a.detail}`);
    return { strategy: requested, reason: `requested (${a.status}: ${a.detail})` };
  }
  const why: string[] = [];
  for (const s of AUTO_ORDER) {
    const a = probeFeature(s);
    if (a.status === 'available') {
      why.push(`${s}: ${a.detail}`);
      return { strategy: s, reason: `auto: ${why.join('; ')}` };
    }
    why.push(`${s} ${a.status}: ${a.detail}`);
  }
  throw new NotSupportedError(`no attach strategy works here: ${why.join('; ')}`);
}

/** The types the object casts kernel addresses to (kt_load in bpf/kt_vcpu.bpf.h). */
const CAST_TYPES = ['file', 'dentry', 'inode', 'kvm_vcpu', 'kvm_run'];

/**
 * Whether the object may read kernel pointers through bpf_rdonly_cast: the kernel lets a tracepoint program
 * call it, and every type cast to is in vmlinux BTF (the kfunc takes vmlinux ids; with KVM as a module its
 * types may live only in kvm.ko's BTF). Otherwise the object's CO-RE reads are used, and the log says why.
 */
export function rdonlyCastUsable(log: (line: string) => void): boolean {
  const probe = probeFeature('rdonly_cast');
  if (probe.status !== 'available') {
    log(`kernel pointers read with CO-RE reads: ${probe.detail}`);
    return false;
  }
  const btf = Btf.vmlinux();
  const missing = CAST_TYPES.filter((t) => btf.findAllByName(t, 'struct').length === 0);
  if (missing.length > 0) {
    log(`kernel pointers read with CO-RE reads: struct ${missing.join(', ')} not in vmlinux BTF (bpf_rdonly_cast takes vmlinux types only)`);
    return false;
  }
  return true;
}
