/**
 * A realistic record sequence for the OpenTelemetry tests, shaped like `kvm-trace attach` output for a small
 * VMM: probe /dev/kvm, create a VM with guest memory, create vCPUs (each in its own thread), set registers,
 * run the guest (PIO exits, a final HLT, one EINTR kick), and close everything. Deterministic for a given
 * start time. The lead's end-to-end test feeds real captured records instead; this stands in until then.
 */
import type { BufferFlag, FdRecord, IoctlRecord, KvmRunRecord, TraceRecord } from '../../src/decode/records.js';

export interface SyntheticOptions {
  /** CLOCK_MONOTONIC ns of the first record (use a real reading so wall-clock checks mean something). */
  startNs: number;
  pid?: number;
  vcpus?: number;
  runsPerVcpu?: number;
  /** Record the KVM_CREATE_VM record's vm field as the new VM index (true) or null (false, default). */
  createVmCarriesIndex?: boolean;
}

export interface SyntheticCapture {
  records: TraceRecord[];
  /** ts_ns of the last record. */
  endNs: number;
  pid: number;
  ioctls: IoctlRecord[];
  nonRunIoctls: IoctlRecord[];
  runs: IoctlRecord[];
  /** vcpu -> exit reason -> count (successful runs). */
  exits: Map<number, Map<string, number>>;
  lost: number;
  /** The summary's decode_errors and ring_resyncs. */
  decodeErrors: number;
  ringResyncs: number;
}

const KVMIO_CMDS: Record<string, string> = {
  KVM_GET_API_VERSION: '0xae00',
  KVM_CREATE_VM: '0xae01',
  KVM_CHECK_EXTENSION: '0xae03',
  KVM_GET_VCPU_MMAP_SIZE: '0xae04',
  KVM_CREATE_VCPU: '0xae41',
  KVM_SET_USER_MEMORY_REGION: '0x4020ae46',
  KVM_RUN: '0xae80',
  KVM_GET_REGS: '0x8090ae81',
  KVM_SET_REGS: '0x4090ae82',
  KVM_GET_SREGS: '0x8138ae83',
  KVM_SET_SREGS: '0x4138ae84',
};

function sizeOf(cmd: string): number {
  return (Number.parseInt(cmd, 16) >>> 16) & 0x3fff;
}

function dirOf(cmd: string): IoctlRecord['dir'] {
  const d = Number.parseInt(cmd, 16) >>> 30;
  return (['none', 'write', 'read', 'readwrite'] as const)[d];
}

export function syntheticCapture(o: SyntheticOptions): SyntheticCapture {
  const pid = o.pid ?? 4242;
  const nVcpus = o.vcpus ?? 2;
  const runsPerVcpu = o.runsPerVcpu ?? 500;
  const comm = 'kvm-ref-guest';
  let seed = 12345;
  const rand = (n: number) => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    return seed % n;
  };

  const records: TraceRecord[] = [];
  /** Per-thread time cursors: vCPU threads run in parallel, like a real VMM. */
  const cursor = new Map<number, number>([[pid, o.startNs]]);

  const ioctl = (
    tid: number,
    fd: number,
    fd_kind: IoctlRecord['fd_kind'],
    vm: number | null,
    vcpu: number | null,
    name: string,
    ret: number,
    latency: number,
    extra: Partial<IoctlRecord> = {},
  ): IoctlRecord => {
    const cmd = KVMIO_CMDS[name];
    const enter = cursor.get(tid)!;
    const r: IoctlRecord = {
      type: 'ioctl',
      ts_ns: enter + latency,
      enter_ns: enter,
      pid,
      tid,
      comm: tid === pid ? comm : `vcpu${vcpu}`,
      fd,
      fd_kind,
      vm,
      vcpu,
      cmd,
      name,
      size: sizeOf(cmd),
      dir: dirOf(cmd),
      arg: '0x0',
      ret,
      errno: null,
      latency_ns: latency,
      ...extra,
    };
    cursor.set(tid, r.ts_ns + 500 + rand(1500));
    records.push(r);
    return r;
  };
  const fdRec = (tid: number, op: FdRecord['op'], fd: number, kind: FdRecord['fd_kind'], vm: number | null, vcpu: number | null) => {
    const ts = cursor.get(tid)!;
    cursor.set(tid, ts + 300);
    const r: FdRecord = { type: 'fd', ts_ns: ts, pid, tid, op, fd, fd_kind: kind, vm, vcpu };
    records.push(r);
  };
  const flag = (what: string, addr: number, len: number, misaligned: boolean, cross: boolean): BufferFlag => ({
    what,
    dir: 'from_user',
    addr: `0x${addr.toString(16)}`,
    len,
    align: 8,
    misaligned,
    cacheline_cross: cross,
    lines: Math.ceil(((addr % 64) + len) / 64),
    min_lines: Math.ceil(len / 64),
    source: 'derived',
  });

  // Probe /dev/kvm.
  fdRec(pid, 'open', 3, 'system', null, null);
  ioctl(pid, 3, 'system', null, null, 'KVM_GET_API_VERSION', 12, 900);
  for (const cap of ['KVM_CAP_USER_MEMORY', 'KVM_CAP_SET_TSS_ADDR', 'KVM_CAP_NR_VCPUS']) {
    ioctl(pid, 3, 'system', null, null, 'KVM_CHECK_EXTENSION', cap === 'KVM_CAP_NR_VCPUS' ? 255 : 1, 700, { arg: '0x3', args: { cap } });
  }
  ioctl(pid, 3, 'system', null, null, 'KVM_GET_VCPU_MMAP_SIZE', 12288, 650);

  // The VM and its memory.
  ioctl(pid, 3, 'system', o.createVmCarriesIndex ? 0 : null, null, 'KVM_CREATE_VM', 4, 2_400_000);
  fdRec(pid, 'open', 4, 'vm', 0, null);
  ioctl(pid, 4, 'vm', 0, null, 'KVM_SET_USER_MEMORY_REGION', 0, 45_000, {
    arg: '0x7ffd1000',
    args: { slot: 0, flags: 0, guest_phys_addr: '0x0', memory_size: 0x200000, userspace_addr: '0x7f0000000000' },
  });
  ioctl(pid, 4, 'vm', 0, null, 'KVM_SET_USER_MEMORY_REGION', -1, 3_000, {
    arg: '0x7ffd1000',
    errno: 'EINVAL',
    args: { slot: 1, flags: 0, guest_phys_addr: '0x300000', memory_size: 0x1001, userspace_addr: '0x7f0000400000' },
    explain: 'memory_size is not a multiple of the page size',
  });

  // vCPUs, each created from its own thread.
  for (let i = 0; i < nVcpus; i++) {
    const tid = pid + 1 + i;
    cursor.set(tid, cursor.get(pid)! + 1000);
    const fd = 5 + i;
    ioctl(tid, 4, 'vm', 0, null, 'KVM_CREATE_VCPU', fd, 180_000, { arg: `0x${i.toString(16)}` });
    fdRec(tid, 'open', fd, 'vcpu', 0, i);
    const run: KvmRunRecord = {
      type: 'kvm_run',
      pid,
      vcpu: i,
      fd,
      kernel_addr: `0xffff88810${i}a4c000`,
      user_addr: `0x7f12340${i}0000`,
      mmap_size: 12288,
    };
    records.push(run);
    ioctl(tid, fd, 'vcpu', 0, i, 'KVM_GET_SREGS', 0, 4_000, { arg: '0x7ffd2000' });
    ioctl(tid, fd, 'vcpu', 0, i, 'KVM_SET_SREGS', 0, 5_500, {
      arg: i === 0 ? '0x7ffd2003' : '0x7ffd2000',
      flags: i === 0 ? [flag('arg', 0x7ffd2003, 312, true, true)] : [flag('arg', 0x7ffd2000, 312, false, false)],
    });
    ioctl(tid, fd, 'vcpu', 0, i, 'KVM_SET_REGS', 0, 3_800, {
      arg: '0x7ffd2030',
      args: { rip: '0x1000', rflags: '0x2' },
      flags: [flag('arg', 0x7ffd2030, 144, false, true)],
    });
    if (i === nVcpus - 1) ioctl(tid, fd, 'vcpu', 0, i, 'KVM_GET_REGS', -1, 1_200, { errno: 'EFAULT' });
  }

  // Run the guest.
  for (let i = 0; i < nVcpus; i++) {
    const tid = pid + 1 + i;
    const fd = 5 + i;
    for (let k = 0; k < runsPerVcpu; k++) {
      const last = k === runsPerVcpu - 1;
      if (i === 1 && k === Math.floor(runsPerVcpu / 2)) {
        ioctl(tid, fd, 'vcpu', 0, i, 'KVM_RUN', -1, 2_000 + rand(2000), { errno: 'EINTR' });
        continue;
      }
      const exit = last
        ? { reason: 'HLT', code: 5 }
        : { reason: 'IO', code: 2, direction: 'out', size: 1, port: 0x3f8 + (k % 2), count: 1, data_offset: 4096 };
      ioctl(tid, fd, 'vcpu', 0, i, 'KVM_RUN', 0, 7_000 + rand(3_000), { exit });
    }
  }
  records.push({ type: 'lost', count: 3 });

  // Tear down: vCPU fds, then the VM fd, then /dev/kvm.
  for (let i = 0; i < nVcpus; i++) fdRec(pid + 1 + i, 'close', 5 + i, 'vcpu', 0, i);
  const tEnd = Math.max(...cursor.values());
  cursor.set(pid, tEnd + 1000);
  fdRec(pid, 'close', 4, 'vm', 0, null);
  fdRec(pid, 'close', 3, 'system', null, null);

  // Records arrive in time order (the ring buffer is drained in order of syscall exit).
  const timeOf = (r: TraceRecord): number | undefined => (r.type === 'ioctl' || r.type === 'fd' || r.type === 'copy' ? r.ts_ns : undefined);
  const timed = records.map((r, i) => ({ r, i, t: timeOf(r) }));
  let lastT = o.startNs;
  for (const x of timed) {
    if (x.t === undefined) x.t = lastT; // kvm_run / lost records travel with their neighbours
    lastT = x.t;
  }
  timed.sort((a, b) => a.t! - b.t! || a.i - b.i);
  const ordered = timed.map((x) => x.r);

  const ioctls = ordered.filter((r): r is IoctlRecord => r.type === 'ioctl');
  const runs = ioctls.filter((r) => r.name === 'KVM_RUN');
  const exits = new Map<number, Map<string, number>>();
  for (const r of runs) {
    if (!r.exit || r.errno) continue;
    const m = exits.get(r.vcpu!) ?? new Map<string, number>();
    m.set(r.exit.reason, (m.get(r.exit.reason) ?? 0) + 1);
    exits.set(r.vcpu!, m);
  }
  const summary: TraceRecord = {
    type: 'summary',
    strategy: 'synthetic',
    events: ioctls.length,
    lost: 3,
    unknown_ioctls: 0,
    duration_s: (tEnd - o.startNs) / 1e9,
    ioctls: {},
    exits: {},
    kvm_run: [],
    fds: { opened: 2 + nVcpus, closed: 2 + nVcpus, leaked: 0 },
    decode_errors: 2,
    ring_resyncs: 1,
    // A kernel that emits kvm:kvm_exit (attach --hw-exits on kvm-amd): the hardware-exit table.
    hw_exits: { available: true, statement: 'hardware exits counted: 3 kvm:kvm_exit in 2 KVM_RUN calls', names: 'tracefs kvm:kvm_exit format' },
    hw_exit_stats: [
      { isa: 'SVM', reason: 'io', code: 0x7b, samples: 2, pct: 66.67, time_pct: 80, count: 2, min_ns: 900, p50_ns: 1000, p90_ns: 1100, p99_ns: 1100, max_ns: 1100, sum_ns: 2000 },
      { isa: 'SVM', reason: 'npf', code: 0x400, samples: 1, pct: 33.33, time_pct: 20, count: 1, min_ns: 500, p50_ns: 500, p90_ns: 500, p99_ns: 500, max_ns: 500, sum_ns: 500 },
    ],
  };
  ordered.push(summary);
  const endNs = Math.max(...ordered.map((r) => timeOf(r) ?? 0));
  return {
    records: ordered,
    endNs,
    pid,
    ioctls,
    nonRunIoctls: ioctls.filter((r) => r.name !== 'KVM_RUN'),
    runs,
    exits,
    lost: 3,
    decodeErrors: 2,
    ringResyncs: 1,
  };
}
