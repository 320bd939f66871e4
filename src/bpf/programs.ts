/**
 * Which programs of bpf/kvm_trace.bpf.c make up each attach strategy. Names are the C function names
 * (libbpf's bpf_program__name). The tracepoint set is the base every strategy attaches; the richer
 * strategies add the copy_{from,to}_user observers and the kvm_arch_vcpu_ioctl_run hook.
 */
export type Strategy = 'tracepoint' | 'kprobe' | 'fentry';
export type StrategyOption = 'auto' | Strategy;

export const STRATEGIES: readonly StrategyOption[] = ['auto', 'kprobe', 'fentry', 'tracepoint'];

/** Always attached: KVM ioctls (enter/exit) and the KVM fd lifecycle. */
export const BASE_PROGRAMS = [
  'kt_ioctl_enter',
  'kt_ioctl_exit',
  'kt_openat_exit',
  'kt_open_exit',
  'kt_mmap_exit',
  'kt_close_exit',
  'kt_process_exit',
  // the rest of the fd lifecycle (bpf/kt_fd_track.bpf.h)
  'kt_thread_exit',
  'kt_dup_exit',
  'kt_dup2_exit',
  'kt_dup3_exit',
  'kt_fcntl_exit',
  'kt_close_range_exit',
  'kt_execve_exit',
  'kt_execveat_exit',
  'kt_openat2_exit',
  'kt_process_fork',
] as const;

/** Added by the kprobe strategy. */
export const KPROBE_PROGRAMS = ['kt_copy_from_user_kprobe', 'kt_copy_to_user_kprobe', 'kt_vcpu_run_kprobe'] as const;

/** Added by the fentry strategy. */
export const FENTRY_PROGRAMS = ['kt_copy_from_user_fentry', 'kt_copy_to_user_fentry', 'kt_vcpu_run_fentry'] as const;

/** Every program a strategy attaches, base first. */
export function strategyPrograms(strategy: Strategy): string[] {
  switch (strategy) {
    case 'tracepoint':
      return [...BASE_PROGRAMS];
    case 'kprobe':
      return [...BASE_PROGRAMS, ...KPROBE_PROGRAMS];
    case 'fentry':
      return [...BASE_PROGRAMS, ...FENTRY_PROGRAMS];
  }
}

/** Richest first: what `auto` tries in order. */
export const AUTO_ORDER: readonly Strategy[] = ['fentry', 'kprobe', 'tracepoint'];
