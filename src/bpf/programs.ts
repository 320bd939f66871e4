/**
 * The programs of bpf/kvm_trace.bpf.c and how strategies use them. Names are the C function names
 * (libbpf's bpf_program__name). The base set (tracepoints: KVM ioctls, the KVM fd lifecycle) is what every
 * strategy attaches and must attach. On top, copy hooks: one per kernel function that copies user memory
 * for a KVM ioctl, each with a kprobe and an fentry sibling, attached (or not, with the reason) one by one
 * — kernels differ per function, not per strategy (hooks.ts).
 */
export type Strategy = 'tracepoint' | 'kprobe' | 'fentry';
export type StrategyOption = 'auto' | Strategy;
/** A program family a hook can attach with. */
export type HookFamily = 'kprobe' | 'fentry';

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

export interface CopyHook {
  /** The kernel function observed (its name in kallsyms and BTF); also the hook's name in results. */
  hook: string;
  /** enum kt_copy_hook of bpf/kvm_trace.h. */
  id: number;
  kprobe: string;
  fentry: string;
  /** Not attached while this hook is: its copies go through that one and would be seen twice. */
  coveredBy?: string;
}

/** In attach order: a hook named in another's coveredBy comes before it. */
export const COPY_HOOKS: readonly CopyHook[] = [
  { hook: '_copy_from_user', id: 1, kprobe: 'kt_copy_from_user_kprobe', fentry: 'kt_copy_from_user_fentry' },
  { hook: '_copy_to_user', id: 2, kprobe: 'kt_copy_to_user_kprobe', fentry: 'kt_copy_to_user_fentry' },
  { hook: 'memdup_user', id: 3, kprobe: 'kt_memdup_user_kprobe', fentry: 'kt_memdup_user_fentry', coveredBy: '_copy_from_user' },
  { hook: 'vmemdup_user', id: 4, kprobe: 'kt_vmemdup_user_kprobe', fentry: 'kt_vmemdup_user_fentry', coveredBy: '_copy_from_user' },
];

/** Every kprobe program of the hooks. */
export const KPROBE_PROGRAMS: readonly string[] = COPY_HOOKS.map((h) => h.kprobe);

/** Every fentry program of the hooks. */
export const FENTRY_PROGRAMS: readonly string[] = COPY_HOOKS.map((h) => h.fentry);

/** The program of `hook` in `family`. */
export function hookProgram(hook: CopyHook, family: HookFamily): string {
  return family === 'kprobe' ? hook.kprobe : hook.fentry;
}

/** Every program a strategy may attach, base first (its hooks' siblings of the strategy's family). */
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
