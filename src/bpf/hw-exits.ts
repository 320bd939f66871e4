/**
 * The hardware-exit hook set (bpf/kt_hw.bpf.h: kt_kvm_entry, kt_kvm_exit on the kvm:kvm_entry / kvm:kvm_exit
 * tracepoints), planned, loaded and attached on its own like the copy hooks: a kernel without the
 * tracepoints (KVM not loaded), or whose kvm_exit event the object cannot relocate against, loses this set
 * and keeps the rest. Whether the events actually fire is a separate question, answered by observation
 * (hwExitVerdict): PVM has the tracepoints but never emits them.
 */
import { type BpfLinkPtr, type BpfProgramPtr, attachProgram, destroyLink } from '../ffi/libbpf.js';
import { tracepointExists } from './tracefs.js';

export const HW_PROGRAMS = ['kt_kvm_entry', 'kt_kvm_exit'] as const;

/** What became of the hook set: attached or not, and why. */
export interface HwAttach {
  requested: boolean;
  attached: boolean;
  /** One line: how it attached, or why not. */
  reason: string;
}

/** Why the set is not even loaded (not requested, or the tracepoints are missing); undefined: load it. */
export function hwNotLoadedReason(requested: boolean): string | undefined {
  if (!requested) return 'not requested (--hw-exits)';
  const missing = HW_PROGRAMS.map((p) => p.replace('kt_', '')).filter((ev) => !tracepointExists('kvm', ev));
  if (missing.length) return `kvm:${missing.join(', kvm:')} is not a tracepoint of this kernel (KVM not loaded?)`;
  return undefined;
}

/** Attach both programs or neither (one without the other measures nothing); links appended to `links`. */
export function attachHw(progs: Map<string, BpfProgramPtr>, notLoaded: string | undefined, links: BpfLinkPtr[]): HwAttach {
  if (notLoaded !== undefined) return { requested: !notLoaded.startsWith('not requested'), attached: false, reason: notLoaded };
  const mine: BpfLinkPtr[] = [];
  try {
    for (const name of HW_PROGRAMS) mine.push(attachProgram(progs.get(name)!));
  } catch (err) {
    // Half the set measures nothing: detach what did attach.
    for (const l of mine.reverse()) destroyLink(l);
    return { requested: true, attached: false, reason: `attach failed: ${(err as Error).message}` };
  }
  links.push(...mine);
  return { requested: true, attached: true, reason: 'kvm:kvm_entry and kvm:kvm_exit attached' };
}

/** One log line for the set. */
export function hwLine(h: HwAttach): string {
  return h.attached ? `hardware exits: ${h.reason}` : `hardware exits: not attached (${h.reason})`;
}

/** Whether the hardware-exit fields mean something, decided by observation; `statement` is said once. */
export interface HwVerdict {
  available: boolean;
  statement: string;
}

/**
 * After `runs` KVM_RUN calls counted with the hooks attached and `exits` hardware exits seen: every KVM_RUN
 * that reached the guest passes at least one kvm_exit, so runs > 0 with exits = 0 means the kernel does not
 * emit the event (PVM: its own entry path). With no KVM_RUN yet there is nothing to decide (undefined).
 */
export function hwExitVerdict(h: HwAttach, runs: number, exits: number): HwVerdict | undefined {
  if (!h.requested) return undefined;
  if (!h.attached) return { available: false, statement: `hardware exits not counted: ${h.reason}` };
  if (exits > 0) return { available: true, statement: `hardware exits counted: ${exits} kvm:kvm_exit in ${runs} KVM_RUN calls` };
  if (runs === 0) return undefined;
  return {
    available: false,
    statement: `kvm:kvm_exit does not fire on this kernel (${runs} KVM_RUN calls, 0 hardware exits; e.g. the PVM backend emits neither kvm_entry nor kvm_exit): hardware-exit fields left out`,
  };
}
