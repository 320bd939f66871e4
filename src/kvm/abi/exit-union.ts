/**
 * Exit reason (KVM_EXIT_ name without the prefix) → the member of struct kvm_run's exit union that holds its
 * details, as the uapi header's comments pair them. Names only: offsets and sizes always come from the
 * running kernel's BTF, and a member this kernel's BTF lacks is simply not used. Shared by the exit decoder
 * (src/decode/exit.ts) and the kvm_run cache-line analysis (src/analysis/kvm-run-lines.ts).
 */
export const EXIT_UNION_MEMBER: Readonly<Record<string, string>> = {
  UNKNOWN: 'hw',
  FAIL_ENTRY: 'fail_entry',
  EXCEPTION: 'ex',
  IO: 'io',
  DEBUG: 'debug',
  MMIO: 'mmio',
  LOONGARCH_IOCSR: 'iocsr_io',
  HYPERCALL: 'hypercall',
  TPR_ACCESS: 'tpr_access',
  S390_SIEIC: 's390_sieic',
  S390_RESET: 's390_reset_flags',
  S390_UCONTROL: 's390_ucontrol',
  DCR: 'dcr',
  INTERNAL_ERROR: 'internal',
  OSI: 'osi',
  PAPR_HCALL: 'papr_hcall',
  S390_TSCH: 's390_tsch',
  EPR: 'epr',
  SYSTEM_EVENT: 'system_event',
  S390_STSI: 's390_stsi',
  IOAPIC_EOI: 'eoi',
  HYPERV: 'hyperv',
  ARM_NISV: 'arm_nisv',
  X86_RDMSR: 'msr',
  X86_WRMSR: 'msr',
  XEN: 'xen',
  RISCV_SBI: 'riscv_sbi',
  RISCV_CSR: 'riscv_csr',
  NOTIFY: 'notify',
  MEMORY_FAULT: 'memory_fault',
  TDX: 'tdx',
};
