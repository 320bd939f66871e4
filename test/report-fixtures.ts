/**
 * A synthetic but shape-true capture for the report tests: two processes' worth of records as
 * `kvm-trace attach -o` writes them (ioctl records with decoded args and exits, copies seen by the
 * memdup_user hook, kvm_run, fd, lost and summary records). Deterministic: a seeded generator, no clock.
 */
import type { TraceRecord, IoctlRecord } from '../src/decode/records.js';
import { ioctlByName } from '../src/kvm/abi/ioctl-table.js';

function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

export function sampleTrace(opts: { runs?: number; seed?: number } = {}): TraceRecord[] {
  const rand = rng(opts.seed ?? 7);
  const out: TraceRecord[] = [];
  let t = 5_000_000_000;
  const pid = 4242;
  const io = (name: string, tid: number, fd: number, fd_kind: IoctlRecord['fd_kind'], arg: bigint | number, extra: Partial<IoctlRecord> = {}): IoctlRecord => {
    const d = ioctlByName(name);
    const lat = Math.round(extra.latency_ns ?? 2_000 + rand() * 6_000);
    t += lat + 500;
    return {
      type: 'ioctl', ts_ns: t, enter_ns: t - lat, pid, tid, comm: 'vmm-main', fd, fd_kind, vm: fd_kind === 'system' ? null : 0,
      vcpu: fd_kind === 'vcpu' ? fd - 10 : null, cmd: `0x${d.cmd.toString(16)}`, name, size: d.size, dir: d.dir,
      arg: `0x${BigInt(arg).toString(16)}`, ret: 0, errno: null, latency_ns: lat, ...extra,
    };
  };
  // A copy the next ioctl of `tid` makes, seen by the memdup_user hook (inside that ioctl's window).
  const memdup = (tid: number, fd: number, name: string, addr: bigint, len: number): TraceRecord => {
    const d = ioctlByName(name);
    return { type: 'copy', ts_ns: t + 1000, pid, tid, dir: 'from_user', addr: `0x${addr.toString(16)}`, len, cmd: `0x${d.cmd.toString(16)}`, name, fd, hook: 'memdup_user' };
  };
  out.push({ type: 'fd', ts_ns: t, pid, tid: pid, op: 'open', fd: 3, fd_kind: 'system', vm: null, vcpu: null });
  out.push(io('KVM_GET_API_VERSION', pid, 3, 'system', 0, { ret: 12 }));
  out.push(io('KVM_CREATE_VM', pid, 3, 'system', 0, { ret: 4, fd_kind: 'system' }));
  out.push({ type: 'fd', ts_ns: t, pid, tid: pid, op: 'open', fd: 4, fd_kind: 'vm', vm: 0, vcpu: null });
  out.push(io('KVM_GET_SUPPORTED_CPUID', pid, 3, 'system', 0x7ffd0000a010n, { args: { nent: 40, padding: 0 } }));
  out.push(io('KVM_GET_SUPPORTED_CPUID', pid, 3, 'system', 0x7ffd0000a010n, { ret: -1, errno: 'E2BIG', args: { nent: 1 } }));
  out.push(io('KVM_SET_USER_MEMORY_REGION', pid, 4, 'vm', 0x7ffd0000b000n, { args: { slot: 0, flags: 1, guest_phys_addr: 0, memory_size: 0x200000, userspace_addr: '0x7f4400000000' } }));
  for (let v = 0; v < 2; v++) {
    out.push(io('KVM_CREATE_VCPU', pid, 4, 'vm', v, { ret: 10 + v }));
    out.push({ type: 'fd', ts_ns: t, pid, tid: pid, op: 'open', fd: 10 + v, fd_kind: 'vcpu', vm: 0, vcpu: v });
    out.push({ type: 'kvm_run', pid, vcpu: v, fd: 10 + v, kernel_addr: `0xffff8881${(0x2a3c0 + v).toString(16)}000`, user_addr: `0x7f44${(0x1230 + v * 3).toString(16)}000`, mmap_size: 12288 });
  }
  for (let v = 0; v < 2; v++) {
    const tid = pid + 1 + v;
    const fd = 10 + v;
    // Deliberately placed register buffers: aligned, misaligned, line-crossing.
    out.push(memdup(tid, fd, 'KVM_SET_REGS', 0x7f4410000000n + BigInt(v * 0x1000), 144));
    out.push(io('KVM_SET_REGS', tid, fd, 'vcpu', 0x7f4410000000n + BigInt(v * 0x1000)));
    out.push(io('KVM_SET_REGS', tid, fd, 'vcpu', 0x7f4410000104n + BigInt(v * 0x1000)));
    out.push(io('KVM_GET_REGS', tid, fd, 'vcpu', 0x7f4410000238n + BigInt(v * 0x1000)));
    out.push(io('KVM_GET_SREGS', tid, fd, 'vcpu', 0x7f441000033cn + BigInt(v * 0x1000)));
    out.push(io('KVM_SET_SREGS', tid, fd, 'vcpu', 0x7f441000033cn + BigInt(v * 0x1000)));
    out.push(memdup(tid, fd, 'KVM_SET_MSRS', 0x7f4410000808n, 32));
    out.push(io('KVM_SET_MSRS', tid, fd, 'vcpu', 0x7f4410000800n, { args: { nmsrs: 2, pad: 0 }, ret: 2 }));
    out.push(io('KVM_GET_DIRTY_LOG', pid, 4, 'vm', 0x7ffd0000c000n, { args: { slot: 0, padding1: 0, dirty_bitmap: '0x7f4420000004' } }));
    const runs = opts.runs ?? 200;
    for (let i = 0; i < runs; i++) {
      const last = i === runs - 1;
      const kind = last ? 'HLT' : i % 10 === 9 ? 'MMIO' : 'IO';
      const exit = kind === 'IO'
        ? { reason: 'IO', code: 2, direction: 1, size: 1, port: 0x3f8, count: 1, data_offset: 4096 }
        : kind === 'MMIO'
          ? { reason: 'MMIO', code: 6, phys_addr: '0xfee00000', len: 4, is_write: 1 }
          : { reason: 'HLT', code: 5 };
      out.push(io('KVM_RUN', tid, fd, 'vcpu', 0, { exit, latency_ns: 7_000 + Math.round(rand() * 3_000) + (i % 50 === 0 ? 80_000 : 0) }));
    }
  }
  out.push(io('KVM_CHECK_EXTENSION', pid, 4, 'vm', 3, { ret: 1 }));
  out.push(io('KVM_SET_REGS', pid, 99, 'unknown', 0x10, { ret: -1, errno: 'EBADF' }));
  out.push({ type: 'lost', count: 3 });
  out.push({ type: 'fd', ts_ns: t, pid, tid: pid, op: 'close', fd: 11, fd_kind: 'vcpu', vm: 0, vcpu: 1 });
  out.push({ type: 'fd', ts_ns: t, pid, tid: pid, op: 'leak', fd: 10, fd_kind: 'vcpu', vm: 0, vcpu: 0 });
  out.push({
    type: 'summary', strategy: 'tracepoint', events: out.length, lost: 3, unknown_ioctls: 0, duration_s: 1.25,
    ioctls: {}, exits: {}, kvm_run: [], fds: { opened: 4, closed: 1, leaked: 1 },
    // attach --hw-exits on a kernel that emits kvm:kvm_exit: what only the kernel's maps know.
    hw_exits: { available: true, statement: 'hardware exits counted: 7 kvm:kvm_exit in 5 KVM_RUN calls', names: 'tracefs kvm:kvm_exit format' },
    hw_exit_stats: [
      { isa: 'SVM', reason: 'io', code: 0x7b, samples: 5, pct: 71.43, time_pct: 62.5, count: 5, min_ns: 900, p50_ns: 1000, p90_ns: 1100, p99_ns: 1100, max_ns: 1100, sum_ns: 5000 },
      { isa: 'SVM', reason: 'npf', code: 0x400, samples: 2, pct: 28.57, time_pct: 37.5, count: 2, min_ns: 1500, p50_ns: 1500, p90_ns: 1500, p99_ns: 1500, max_ns: 1500, sum_ns: 3000 },
    ],
    hooks: {
      _copy_from_user: { attached: false, reason: 'fentry: EBUSY; kprobe: EINVAL' },
      _copy_to_user: { attached: false, reason: 'fentry: EBUSY; kprobe: EINVAL' },
      memdup_user: { attached: true, program: 'kt_memdup_user_fentry', reason: 'fentry' },
      vmemdup_user: { attached: true, program: 'kt_vmemdup_user_fentry', reason: 'fentry' },
    },
  });
  return out;
}

export const toJsonl = (records: TraceRecord[]): string => records.map((r) => JSON.stringify(r)).join('\n') + '\n';
