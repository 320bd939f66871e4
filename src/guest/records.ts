/**
 * The reference guest's ground-truth log (`kvm-trace guest --log FILE.jsonl`): one JSON object per line,
 * written by the process that issued the ioctls, so a capture can be checked record by record. Addresses
 * and request numbers are "0x…" strings; times are CLOCK_MONOTONIC ns (the clock of bpf_ktime_get_ns).
 *
 * Besides the guest's VM and vCPUs, the log holds the long-mode probe (unless --no-long-mode): a second VM
 * with one vCPU, created, run and closed on the main thread after the vCPU threads finished. It is ground
 * truth like the rest (its own fds, its own kvm_run record with vcpu 0); GuestResult.kvm_run lists only the
 * guest's vCPUs.
 */
import type { FdKind } from '../kvm/abi/ioctl-table.js';

export type PlacementIntent = 'aligned' | 'misaligned' | 'line-cross' | 'page-cross';

/** One user buffer the kernel copies for an ioctl of the `layout` scenario, placed on purpose. */
export interface GtBuffer {
  /** "arg" (the ioctl's argument struct) or a nested buffer, e.g. "kvm_msrs.entries". */
  what: string;
  /** Direction of the copies the kernel makes for it: from_user, to_user, or both (read-write). */
  dir: 'from_user' | 'to_user' | 'both';
  addr: string;
  len: number;
  /** Natural alignment of the buffer's C type (from the layout declaration). */
  align: number;
  intent: PlacementIntent;
  /** 64-byte lines the buffer touches, and the fewest any buffer of this length must touch. */
  lines: number;
  min_lines: number;
  /** Plain arithmetic on addr/len/align: what a tracer's flags must say. */
  expected: { misaligned: boolean; cacheline_cross: boolean };
}

/** Every ioctl the guest issued, successful or not, on /dev/kvm, VM and vCPU fds. */
export interface GtIoctlRecord {
  type: 'ioctl';
  t0_ns: number;
  t1_ns: number;
  tid: number;
  fd: number;
  fd_kind: FdKind;
  cmd: string;
  name: string;
  /** The raw third argument: a buffer address, or the integer value (_IO ioctls). */
  arg: string;
  /** Argument size encoded in the request number. */
  size: number;
  /** The syscall's return value as the kernel returned it: >= 0, or -errno (libc's -1 is not recorded). */
  ret: number;
  errno: string | null;
  vcpu: number | null;
  /** Only in the layout scenario: the placed buffers this ioctl copies. */
  buffers?: GtBuffer[];
}

export interface GtKvmRunRecord {
  type: 'kvm_run';
  vcpu: number;
  fd: number;
  tid: number;
  user_addr: string;
  mmap_size: number;
}

export interface GtFdRecord {
  type: 'fd';
  op: 'open' | 'close';
  t_ns: number;
  tid: number;
  fd: number;
  fd_kind: FdKind;
  vcpu: number | null;
}

/** Guest RAM and layout-slot memory the guest mapped and handed to KVM. */
export interface GtMemoryRecord {
  type: 'memory';
  slot: number;
  guest_phys_addr: string;
  size: number;
  user_addr: string;
}

export interface GtExitsRecord {
  type: 'exits';
  vcpu: number;
  counts: Record<string, number>;
}

export interface GtSummaryRecord {
  type: 'summary';
  pid: number;
  scenarios: string[];
  vcpus: number;
  exits: Record<string, number>;
  /** Every ioctl the process issued during the run: equals the number of ioctl records. */
  ioctls: number;
  long_mode: boolean;
  elapsed_s: number;
}

export type GtRecord = GtIoctlRecord | GtKvmRunRecord | GtFdRecord | GtMemoryRecord | GtExitsRecord | GtSummaryRecord;
