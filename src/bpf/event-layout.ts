/**
 * The TypeScript mirror of bpf/kvm_trace.h: the kt_* records and map values shared by the BPF programs and
 * user space, declared once here with the C layout DSL (offsets follow the C rules, none typed by hand) and
 * turned into plain numeric offsets for the decoder's hot path. It lives at the BPF stage because both the
 * loader (stats and aggregate map values) and the decoder above it read it. test/event-layout.test.ts reads
 * the compiled BPF object's BTF and proves every struct size and member offset/size equals these.
 */
import { array, memberAt, s32, s64, s8, struct, u16, u32, u64, u8, type RecordType } from '../cdata/layout.js';

export const KT_TASK_COMM_LEN = 16;
export const KT_DATA_MAX = 512;
export const KT_RUN_SNAP = 288;

export const KT_EV_IOCTL = 1;
export const KT_EV_FD = 2;
export const KT_EV_MMAP = 3;
export const KT_EV_EXIT = 4;
export const KT_EV_COPY = 5;
export const KT_EV_FORK = 6;
export const KT_EV_THREAD_EXIT = 7;

/** Record type names (kt_event_type without KT_EV_, lower case), for messages about a record. */
export const EVENT_TYPE_NAMES: Record<number, string> = {
  [KT_EV_IOCTL]: 'ioctl',
  [KT_EV_FD]: 'fd',
  [KT_EV_MMAP]: 'mmap',
  [KT_EV_EXIT]: 'exit',
  [KT_EV_COPY]: 'copy',
  [KT_EV_FORK]: 'fork',
  [KT_EV_THREAD_EXIT]: 'thread_exit',
};

export const KT_F_IN_FAULT = 1 << 0;
export const KT_F_OUT_FAULT = 1 << 1;
export const KT_F_IN_TRUNC = 1 << 2;
export const KT_F_OUT_TRUNC = 1 << 3;
export const KT_F_RUN = 1 << 4;
export const KT_F_NO_ENTER = 1 << 5;
export const KT_F_HW = 1 << 6;

export const KT_FD_UNKNOWN = 0;
export const KT_FD_SYSTEM = 1;
export const KT_FD_VM = 2;
export const KT_FD_VCPU = 3;
export const KT_FD_DEVICE = 4;

export const KT_FD_OPEN = 1;
export const KT_FD_CLOSE = 2;
export const KT_FD_DUP = 3;
export const KT_FD_CLOSE_RANGE = 4;
export const KT_FD_EXEC_CLOSE = 5;

export const KT_COPY_FROM_USER = 1;
export const KT_COPY_TO_USER = 2;

export const KT_HOOK_COPY_FROM_USER = 1;
export const KT_HOOK_COPY_TO_USER = 2;
export const KT_HOOK_MEMDUP_USER = 3;
export const KT_HOOK_VMEMDUP_USER = 4;

export const KT_STAT_LOST = 0;
export const KT_STAT_EVENTS = 1;
export const KT_STAT_NO_ENTER = 2;
export const KT_STAT_STATE_UNAVAILABLE = 3;
export const KT_STAT_HANDLING_FOLDED = 4;
export const KT_STAT_HANDLING_OVERFLOW = 5;
export const KT_STAT_HANDLING_UNTIMED = 6;
export const KT_STAT_VCPU_OVERFLOW = 7;
export const KT_STAT_HW_OVERFLOW = 8;
export const KT_STAT_IOCTL_OVERFLOW = 9;
export const KT_STAT_MAX = 10;

export const KT_AGG_BUCKETS = 128;
export const KT_AGG_REASONS = 64;

export const KT_XK_REASON = 0;
export const KT_XK_IO = 1;
export const KT_XK_MMIO = 2;
export const KT_XK_ERROR = 3;
export const KT_XK_FOLDED = 4;

// `char comm[16]` is signed char on x86_64 / BPF; s8 keeps the BTF comparison honest.
const comm = array(s8, KT_TASK_COMM_LEN);

export const kt_hdr = struct('kt_hdr', [
  ['type', u16],
  ['flags', u16],
  ['cpu', u32],
  ['ts_ns', u64],
  ['pid', u32],
  ['tid', u32],
]);

export const kt_ioctl_event = struct('kt_ioctl_event', [
  ['hdr', kt_hdr],
  ['enter_ns', u64],
  ['arg', u64],
  ['ret', s64],
  ['fd', s32],
  ['cmd', u32],
  ['run_kaddr', u64],
  ['vcpu_id', s32],
  ['exit_reason', u32],
  ['pio_data', u64],
  ['in_len', u16],
  ['out_len', u16],
  ['fd_kind', u32],
  ['hw_exits', u32],
  ['__pad1', u32],
  ['guest_ns', u64],
  ['comm', comm],
  ['data', array(u8, 2 * KT_DATA_MAX)],
]);

export const kt_fd_event = struct('kt_fd_event', [
  ['hdr', kt_hdr],
  ['fd', s32],
  ['op', u32],
  ['kind', u32],
  ['ret', s32],
  ['comm', comm],
]);

export const kt_mmap_event = struct('kt_mmap_event', [
  ['hdr', kt_hdr],
  ['addr', u64],
  ['len', u64],
  ['pgoff', u64],
  ['fd', s32],
  ['kind', u32],
  ['prot', u32],
  ['mflags', u32],
]);

export const kt_exit_event = struct('kt_exit_event', [
  ['hdr', kt_hdr],
  ['exit_code', s32],
  ['__pad', u32],
  ['comm', comm],
]);

export const kt_copy_event = struct('kt_copy_event', [
  ['hdr', kt_hdr],
  ['uaddr', u64],
  ['len', u64],
  ['dir', u32],
  ['cmd', u32],
  ['fd', s32],
  ['hook', u32],
]);

export const kt_fork_event = struct('kt_fork_event', [
  ['hdr', kt_hdr],
  ['child_pid', u32],
  ['inherited', u32],
  ['comm', comm],
]);

// Aggregate-only mode: map values, not records (read per CPU by src/bpf/aggregate.ts).
export const kt_agg_ioctl = struct('kt_agg_ioctl', [
  ['count', u64],
  ['errors', u64],
  ['no_enter', u64],
  ['sum_ns', u64],
  ['max_ns', u64],
  ['hist', array(u64, KT_AGG_BUCKETS)],
]);

export const kt_agg_ioctl_key = struct('kt_agg_ioctl_key', [
  ['tgid', u32],
  ['cmd', u32],
]);

export const kt_agg_vcpu_key = struct('kt_agg_vcpu_key', [
  ['tgid', u32],
  ['vcpu_id', s32],
  ['kvm', u64],
]);

export const kt_agg_vcpu = struct('kt_agg_vcpu', [
  ['run', kt_agg_ioctl],
  ['reasons', array(u64, KT_AGG_REASONS)],
  ['hw_runs', u64],
  ['hw_exits', u64],
  ['hw_max_exits', u64],
  ['guest_ns', u64],
  ['hw_run_ns', u64],
]);

export const kt_exit_key = struct('kt_exit_key', [
  ['reason', u32],
  ['port', u16],
  ['dir', u8],
  ['kind', u8],
  ['addr', u64],
]);

export const kt_handling_key = struct('kt_handling_key', [
  ['vcpu', kt_agg_vcpu_key],
  ['exit', kt_exit_key],
]);

export const kt_hw_key = struct('kt_hw_key', [
  ['vcpu', kt_agg_vcpu_key],
  ['isa', u32],
  ['reason', u32],
]);

export const kt_agg_hist = struct('kt_agg_hist', [
  ['count', u64],
  ['sum_ns', u64],
  ['min_ns', u64],
  ['max_ns', u64],
  ['hist', array(u64, KT_AGG_BUCKETS)],
]);

export const kt_agg_vm = struct('kt_agg_vm', [
  ['tgid', u32],
  ['fd', s32],
  ['created_ns', u64],
]);

/** Every struct of kvm_trace.h, by C tag (what the BTF test walks). */
export const EVENT_STRUCTS: Record<string, RecordType> = {
  kt_hdr,
  kt_ioctl_event,
  kt_fd_event,
  kt_mmap_event,
  kt_exit_event,
  kt_copy_event,
  kt_fork_event,
  kt_agg_ioctl,
  kt_agg_ioctl_key,
  kt_agg_vcpu_key,
  kt_agg_vcpu,
  kt_exit_key,
  kt_handling_key,
  kt_hw_key,
  kt_agg_hist,
  kt_agg_vm,
};

const at = (t: RecordType, path: string): number => memberAt(t, path).offset;

// Offsets as plain numbers for the decoder's hot path.
export const HDR = {
  type: at(kt_hdr, 'type'),
  flags: at(kt_hdr, 'flags'),
  cpu: at(kt_hdr, 'cpu'),
  ts_ns: at(kt_hdr, 'ts_ns'),
  pid: at(kt_hdr, 'pid'),
  tid: at(kt_hdr, 'tid'),
  size: kt_hdr.size,
} as const;

export const IOCTL = {
  enter_ns: at(kt_ioctl_event, 'enter_ns'),
  arg: at(kt_ioctl_event, 'arg'),
  ret: at(kt_ioctl_event, 'ret'),
  fd: at(kt_ioctl_event, 'fd'),
  cmd: at(kt_ioctl_event, 'cmd'),
  run_kaddr: at(kt_ioctl_event, 'run_kaddr'),
  vcpu_id: at(kt_ioctl_event, 'vcpu_id'),
  exit_reason: at(kt_ioctl_event, 'exit_reason'),
  pio_data: at(kt_ioctl_event, 'pio_data'),
  in_len: at(kt_ioctl_event, 'in_len'),
  out_len: at(kt_ioctl_event, 'out_len'),
  fd_kind: at(kt_ioctl_event, 'fd_kind'),
  hw_exits: at(kt_ioctl_event, 'hw_exits'),
  guest_ns: at(kt_ioctl_event, 'guest_ns'),
  comm: at(kt_ioctl_event, 'comm'),
  data: at(kt_ioctl_event, 'data'),
  size: kt_ioctl_event.size,
} as const;

export const FD = {
  fd: at(kt_fd_event, 'fd'),
  op: at(kt_fd_event, 'op'),
  kind: at(kt_fd_event, 'kind'),
  ret: at(kt_fd_event, 'ret'),
  comm: at(kt_fd_event, 'comm'),
  size: kt_fd_event.size,
} as const;

export const MMAP = {
  addr: at(kt_mmap_event, 'addr'),
  len: at(kt_mmap_event, 'len'),
  pgoff: at(kt_mmap_event, 'pgoff'),
  fd: at(kt_mmap_event, 'fd'),
  kind: at(kt_mmap_event, 'kind'),
  prot: at(kt_mmap_event, 'prot'),
  mflags: at(kt_mmap_event, 'mflags'),
  size: kt_mmap_event.size,
} as const;

export const EXIT = {
  exit_code: at(kt_exit_event, 'exit_code'),
  comm: at(kt_exit_event, 'comm'),
  size: kt_exit_event.size,
} as const;

export const AGG_IOCTL = {
  count: at(kt_agg_ioctl, 'count'),
  errors: at(kt_agg_ioctl, 'errors'),
  no_enter: at(kt_agg_ioctl, 'no_enter'),
  sum_ns: at(kt_agg_ioctl, 'sum_ns'),
  max_ns: at(kt_agg_ioctl, 'max_ns'),
  hist: at(kt_agg_ioctl, 'hist'),
  size: kt_agg_ioctl.size,
} as const;

/** Offsets inside a struct kt_agg_vcpu (the KVM_RUN counters are a kt_agg_ioctl at `run`). */
export const AGG_VCPU = {
  run: at(kt_agg_vcpu, 'run'),
  reasons: at(kt_agg_vcpu, 'reasons'),
  hw_runs: at(kt_agg_vcpu, 'hw_runs'),
  hw_exits: at(kt_agg_vcpu, 'hw_exits'),
  hw_max_exits: at(kt_agg_vcpu, 'hw_max_exits'),
  guest_ns: at(kt_agg_vcpu, 'guest_ns'),
  hw_run_ns: at(kt_agg_vcpu, 'hw_run_ns'),
  size: kt_agg_vcpu.size,
} as const;

export const AGG_VCPU_KEY = {
  tgid: at(kt_agg_vcpu_key, 'tgid'),
  vcpu_id: at(kt_agg_vcpu_key, 'vcpu_id'),
  kvm: at(kt_agg_vcpu_key, 'kvm'),
  size: kt_agg_vcpu_key.size,
} as const;

export const AGG_IOCTL_KEY = {
  tgid: at(kt_agg_ioctl_key, 'tgid'),
  cmd: at(kt_agg_ioctl_key, 'cmd'),
  size: kt_agg_ioctl_key.size,
} as const;

export const HANDLING_KEY = {
  vcpu: at(kt_handling_key, 'vcpu'),
  reason: at(kt_handling_key, 'exit.reason'),
  port: at(kt_handling_key, 'exit.port'),
  dir: at(kt_handling_key, 'exit.dir'),
  kind: at(kt_handling_key, 'exit.kind'),
  addr: at(kt_handling_key, 'exit.addr'),
  size: kt_handling_key.size,
} as const;

export const HW_KEY = {
  vcpu: at(kt_hw_key, 'vcpu'),
  isa: at(kt_hw_key, 'isa'),
  reason: at(kt_hw_key, 'reason'),
  size: kt_hw_key.size,
} as const;

export const AGG_HIST = {
  count: at(kt_agg_hist, 'count'),
  sum_ns: at(kt_agg_hist, 'sum_ns'),
  min_ns: at(kt_agg_hist, 'min_ns'),
  max_ns: at(kt_agg_hist, 'max_ns'),
  hist: at(kt_agg_hist, 'hist'),
  size: kt_agg_hist.size,
} as const;

export const AGG_VM = {
  tgid: at(kt_agg_vm, 'tgid'),
  fd: at(kt_agg_vm, 'fd'),
  created_ns: at(kt_agg_vm, 'created_ns'),
  size: kt_agg_vm.size,
} as const;

export const COPY = {
  uaddr: at(kt_copy_event, 'uaddr'),
  len: at(kt_copy_event, 'len'),
  dir: at(kt_copy_event, 'dir'),
  cmd: at(kt_copy_event, 'cmd'),
  fd: at(kt_copy_event, 'fd'),
  hook: at(kt_copy_event, 'hook'),
  size: kt_copy_event.size,
} as const;

export const FORK = {
  child_pid: at(kt_fork_event, 'child_pid'),
  inherited: at(kt_fork_event, 'inherited'),
  comm: at(kt_fork_event, 'comm'),
  size: kt_fork_event.size,
} as const;

/** Smallest valid length of each record type (ioctl records may end right after their data bytes). */
export const MIN_LEN: Record<number, number> = {
  [KT_EV_IOCTL]: IOCTL.data,
  [KT_EV_FD]: FD.size,
  [KT_EV_MMAP]: MMAP.size,
  [KT_EV_EXIT]: EXIT.size,
  [KT_EV_COPY]: COPY.size,
  [KT_EV_FORK]: FORK.size,
  [KT_EV_THREAD_EXIT]: EXIT.size,
};
