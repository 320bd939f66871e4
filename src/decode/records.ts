/**
 * The JSONL record contract: what `kvm-trace attach -o FILE` writes, one JSON object per line, and what
 * `report`, the OpenTelemetry exporter and users consume. Addresses and request numbers are hex strings
 * ("0x…") so 64-bit values survive JSON; counts and times are numbers (ns fit in a double until 2255).
 */

export type FdKind = 'system' | 'vm' | 'vcpu' | 'device' | 'unknown';

/** Where a copied user buffer came from: seen by a copy hook (kprobe/fentry), or derived from the copy rules. */
export type FlagSource = 'observed' | 'derived';

export interface BufferFlag {
  /** "arg", or a nested buffer such as "kvm_msrs.entries", "kvm_cpuid2.entries", "sigmask". */
  what: string;
  dir: 'from_user' | 'to_user';
  addr: string;
  len: number;
  /** Natural alignment of the buffer's type, from BTF. */
  align: number;
  misaligned: boolean;
  cacheline_cross: boolean;
  lines: number;
  min_lines: number;
  source: FlagSource;
  /** Observed: the copy hook that saw it (the kernel function: "memdup_user", "_copy_from_user", …). */
  hook?: string;
  /**
   * Derived: the routine the copy rules say the handler copies through ("copy_to_user", "memdup_user", …),
   * which no attached hook observes.
   */
  via?: string;
}

export interface ExitInfo {
  /** "IO", "MMIO", "HLT", … (KVM_EXIT_ without the prefix), or "UNKNOWN_<n>". */
  reason: string;
  code: number;
  [detail: string]: unknown;
}

export interface IoctlRecord {
  type: 'ioctl';
  /** Syscall exit, CLOCK_MONOTONIC ns. */
  ts_ns: number;
  enter_ns: number;
  pid: number;
  tid: number;
  comm: string;
  fd: number;
  fd_kind: FdKind;
  /** Index of the VM (per process, in creation order) this fd belongs to, or null. */
  vm: number | null;
  /** vCPU id for vCPU fds, else null. */
  vcpu: number | null;
  cmd: string;
  name: string;
  /** Argument size encoded in the request number. */
  size: number;
  dir: 'none' | 'write' | 'read' | 'readwrite';
  arg: string;
  ret: number;
  errno: string | null;
  latency_ns: number;
  /** Exit seen without its enter (tracing attached mid-call): enter_ns and latency_ns are 0. */
  no_enter?: true;
  /**
   * KVM_RUN with the hardware-exit hooks (attach --hw-exits), only where the kernel emits kvm:kvm_exit: the
   * in-kernel exits the call absorbed, its time in the guest (kvm_entry → kvm_exit, summed) and in KVM
   * (latency_ns − guest_ns). Absent where the events do not fire (the summary's hw_exits says so once).
   */
  hw_exits?: number;
  guest_ns?: number;
  kvm_ns?: number;
  /**
   * The decoded argument (see src/decode/btf-args.ts and ioctl-args.ts for the full rules): BTF member
   * names; integers as numbers when exact else "0x…"; pointers and address-named u64s as "0x…"; byte
   * arrays > 16 as hex strings (memory order, no "0x"); anonymous struct/union members flattened; flexible
   * arrays up to the captured bytes and their count member; `_truncated: true` when bytes were cut,
   * `_fault: true` when the argument could not be read. Integer arguments are named (KVM_CHECK_EXTENSION
   * {cap:"KVM_CAP_…", value}, KVM_CREATE_VCPU {id}, KVM_CREATE_VM {type}, …). Decoded from the out bytes
   * when the call succeeded and they were captured, else from the in bytes.
   */
  args?: Record<string, unknown>;
  /** Read-write calls: top-level scalar members the caller passed in with a different value. */
  args_in?: Record<string, unknown>;
  exit?: ExitInfo;
  flags?: BufferFlag[];
  /** Why a failing call failed, when the cause is visible (ABI check). */
  explain?: string;
}

export interface KvmRunRecord {
  type: 'kvm_run';
  pid: number;
  vcpu: number;
  fd: number;
  kernel_addr: string | null;
  user_addr: string | null;
  mmap_size: number | null;
}

export interface FdRecord {
  type: 'fd';
  ts_ns: number;
  pid: number;
  tid: number;
  op: 'open' | 'close' | 'leak';
  fd: number;
  fd_kind: FdKind;
  vm: number | null;
  vcpu: number | null;
  ret?: number;
  /**
   * How the fd came or went when not by open(2) / a KVM_CREATE_* call / close(2): "dup" (a copy made by
   * dup, dup2, dup3 or fcntl F_DUPFD*: `dup_of` is the original), "dup2" (closed because dup2/dup3 put
   * another file on its number), "close_range", "execve" (an O_CLOEXEC fd closed by a successful
   * execve), "fork" (a forked child's copy: `parent` is the parent's pid).
   */
  via?: 'dup' | 'dup2' | 'close_range' | 'execve' | 'fork';
  dup_of?: number;
  parent?: number;
}

export interface LostRecord {
  type: 'lost';
  count: number;
}

export interface CopyRecord {
  type: 'copy';
  ts_ns: number;
  pid: number;
  tid: number;
  dir: 'from_user' | 'to_user';
  addr: string;
  len: number;
  cmd: string;
  name: string;
  fd: number;
  /** The copy hook that saw it: the kernel function ("memdup_user", "_copy_from_user", …). */
  hook?: string;
}

export interface LatencyStats {
  count: number;
  errors: number;
  p50_ns: number;
  p99_ns: number;
  max_ns: number;
}

/**
 * Count and spread of a set of durations (ns). min/max/sum exact; p50/p90/p99 from a log-linear histogram
 * (32 buckets per power of two, the bucket's midpoint clamped to min/max: within 1.6 % of the exact value).
 */
export interface DurationStats {
  count: number;
  min_ns: number;
  p50_ns: number;
  p90_ns: number;
  p99_ns: number;
  max_ns: number;
  sum_ns: number;
}

/**
 * One row of the perf-kvm-stat-style table (summary `exit_stats`): the KVM_RUN calls that returned to user
 * space with this exit reason, and their KVM_RUN latency. `reason` is the exit reason ("IO", "HLT", …), or
 * "error <ERRNO>" for a failed KVM_RUN that left no exit reason. `pct` / `time_pct`: share of all KVM_RUN
 * calls / of their summed latency, in percent. Calls seen without their enter (`untimed`) count in `samples`
 * and `pct` only.
 */
export interface ExitReasonStats extends DurationStats {
  reason: string;
  samples: number;
  pct: number;
  time_pct: number;
  untimed?: number;
}

/**
 * VMM handling time of one kind of exit on one vCPU: from a KVM_RUN's return (its record's ts_ns) to the
 * same vCPU's next KVM_RUN entry (the next record's enter_ns), keyed by the exit the first one returned.
 * `key`: "IO out 0x3f8" (port, direction), "MMIO write 0xfee00000-0xfee00fff" (the `mmio_granule`-sized,
 * aligned range holding phys_addr, direction), "HLT", another reason's name, or "error <ERRNO>".
 */
export interface HandlingKeyStats extends DurationStats {
  key: string;
  reason: string;
  dir?: 'in' | 'out' | 'read' | 'write';
  port?: number;
  /** MMIO: first address of the range. */
  addr?: string;
}

export interface VcpuHandlingStats {
  pid: number;
  comm: string;
  /** VM index in the process (creation order), or null when unknown. */
  vm: number | null;
  vcpu: number | null;
  /** The vCPU fd; null in an aggregate capture (the kernel keys a vCPU by process, VM and id). */
  fd: number | null;
  /** Every re-entry of this vCPU, whatever the exit. */
  total: DurationStats;
  by_exit: HandlingKeyStats[];
  /** Returns not followed by a re-entry in the capture (the vCPU stopped, its fd closed, or the capture ended). */
  pending: number;
}

/** Summary `vmm_handling`: per vCPU (pid, VM, vCPU id, fd), the VMM's time between KVM_RUN calls. */
export interface VmmHandlingSummary {
  /** Size (bytes, a power of two) of the aligned MMIO address ranges that key MMIO exits. */
  mmio_granule: number;
  vcpus: VcpuHandlingStats[];
  /** Re-entries that could not be timed: the next KVM_RUN was seen without its enter. */
  untimed: number;
  /** Re-entries whose enter came before the previous return (two threads ran one vCPU): not counted. */
  overlapped: number;
}

/** Summary `hw_exits`: whether hardware exits (kvm:kvm_exit) were counted, and why not — said once. */
export interface HwExitsStatus {
  available: boolean;
  statement: string;
  /** Where the reason names came from (the kvm_exit format in tracefs), or why they are numbers. */
  names?: string;
}

/**
 * One row of the hardware-exit table (summary `hw_exit_stats`, perf kvm stat's view): the in-kernel exits of
 * one reason and the time KVM spent on each (kvm_exit → the next kvm_entry, or the return to user space).
 * `reason` as the running kernel names it ("npf", "EPT_VIOLATION"), `code` the number; percentiles from the
 * kernel's log-linear histogram (within ~12 %), min/max/sum exact.
 */
export interface HwExitStats extends DurationStats {
  isa: string;
  reason: string;
  code: number;
  samples: number;
  pct: number;
  time_pct: number;
}

/** Per vCPU, where its KVM_RUN time went (hardware-exit hooks): guest, KVM, and the VMM between calls. */
export interface RunSplit {
  pid: number;
  vm: number | null;
  vcpu: number | null;
  /** KVM_RUN calls counted with the hooks, the in-kernel exits they absorbed, the most one call absorbed. */
  runs: number;
  hw_exits: number;
  max_hw_exits: number;
  guest_ns: number;
  kvm_ns: number;
  /** VMM handling time over the same vCPU (KVM_RUN return → next KVM_RUN), all exits. */
  vmm_ns: number;
}

/** Summary `hooks`, per copy hook (keyed by the kernel function it observes): attached or not, and why. */
export interface HookStatus {
  attached: boolean;
  /** The program attached (its family in the name: `_fentry` / `_kprobe`). */
  program?: string;
  /** How it attached (`fentry`, `kprobe`), or every reason it did not, one line. */
  reason: string;
}

/** Copies of one ioctl by where they come from. */
export interface CopySourceCounts {
  /** Seen by a copy hook. */
  observed: number;
  /** Derived from the copy rules: no attached hook sees the routine they go through. */
  derived: number;
  /** Derived, but of a length the capture does not reveal (not flagged). */
  unknown: number;
}

/** Summary `flags`: the copied buffers of the capture. */
export interface FlagTotals {
  /** Flagged copies (observed + derived). */
  copies: number;
  bytes: number;
  misaligned: number;
  cacheline_cross: number;
  /** Copies whose length the capture does not reveal (not flagged). */
  unknown: number;
  observed: number;
  derived: number;
  /** Per ioctl name (ioctls that copied anything): observed, derived and unknown-length copies. */
  by_ioctl: Record<string, CopySourceCounts>;
}

export interface SummaryRecord {
  type: 'summary';
  strategy: string;
  events: number;
  lost: number;
  unknown_ioctls: number;
  duration_s: number;
  ioctls: Record<string, LatencyStats>;
  /** "pid/vcpu" -> exit reason -> count */
  exits: Record<string, Record<string, number>>;
  kvm_run: KvmRunRecord[];
  fds: { opened: number; closed: number; leaked: number };
  /** Full capture only (absent with --aggregate): KVM_RUN calls per exit reason and their latency. */
  exit_stats?: ExitReasonStats[];
  /** The VMM's handling time per vCPU and exit (full capture: from records; --aggregate: kept in the kernel). */
  vmm_handling?: VmmHandlingSummary;
  /** With --hw-exits: whether hardware exits were counted here (the statement, once). */
  hw_exits?: HwExitsStatus;
  /** With --hw-exits, where the kernel emits kvm:kvm_exit: hardware exits per reason. */
  hw_exit_stats?: HwExitStats[];
  /** With --hw-exits, where the kernel emits kvm:kvm_exit: per vCPU, guest / KVM / VMM time. */
  run_split?: RunSplit[];
  /** Per copy hook: attached or not, and why (absent when no tracer was opened). */
  hooks?: Record<string, HookStatus>;
  /** Full capture only: copied buffers, observed and derived, in total and per ioctl. */
  flags?: FlagTotals;
  [extra: string]: unknown;
}

export type TraceRecord = IoctlRecord | KvmRunRecord | FdRecord | LostRecord | CopyRecord | SummaryRecord;
