/**
 * One kernel's row of the matrix — what the checklist measured (`--json` prints these) — and the verdict:
 * which checks pass. Pure: the table, the JSON and test/kernels.test.ts all read the same checks.
 */
import { COPY_HOOK, type Hooks } from './hooks.js';
import { hwCheckState, type HwResult } from './hw-check.js';
import type { IoctlRuleCheck } from './rule-check.js';

/** Which ioctls of the demo had their copy rules checked against observed copies, and which could not. */
export interface RuleCoverage {
  /** Every predicted copy goes through a routine an attached hook observes: all compared. */
  checked: string[];
  /** Some predicted copies compared, others through routines no attached hook sees. */
  partly: string[];
  /** No predicted copy observable here: ioctl → through which routines. */
  unobservable: Record<string, string>;
  /** The rules predict no copy (and none was observed). */
  nothing: string[];
}

export interface KvmInfo {
  /** /dev/kvm exists. */
  dev: boolean;
  /** How KVM is in this kernel: loadable modules (kvm.ko + vendor), built in, or not at all. */
  kvm: 'module' | 'built-in' | 'absent';
  /** kvm_amd / kvm_intel when loaded as a module, else null. */
  vendor: string | null;
  /** /sys/kernel/btf/kvm exists (KVM's types in split module BTF). */
  module_btf: boolean;
  /** The kernel offers kprobes (the kprobe PMU). */
  kprobes: boolean;
}

export interface DemoStats {
  issued: number;
  captured: number;
  matched: number;
  lost: number;
  precision: number;
  recall: number;
  /** Every vCPU's kvm_run: user address = the guest's, kernel address captured. */
  kvm_run_ok: boolean;
  perfect: boolean;
}

export interface KernelResult {
  /** Debian package name, or "host" for the running kernel. */
  kernel: string;
  /** How the package was chosen when it is not the one asked for (a pinned default no longer on the mirror). */
  package_note?: string;
  /** uname -r */
  release: string;
  kvm: KvmInfo;
  strategy: string;
  strategy_reason: string;
  hooks: Hooks;
  /** "attached: N programs" as kvm-trace printed it (null when it attached nothing). */
  programs_attached: number | null;
  copy_hooks: string[];
  demo: DemoStats | null;
  demo_error?: string;
  observed_copies: number;
  derived_copies: number;
  /** Copies the rules know happen but whose length the capture does not reveal. */
  unknown_copies: number;
  rule_mismatches: number;
  rule_compared_calls: number;
  rule_details: string[];
  /** The attached copy hooks the rule check compared with (kernel functions). */
  rule_hooks?: string[];
  /** Per ioctl of the demo: calls, copies compared, observed, not observable, mismatches. */
  rule_by_ioctl?: Record<string, IoctlRuleCheck>;
  rule_coverage?: RuleCoverage;
  /** The ioctls issued beyond the reference guest's for the rule check (extra-ioctls.ts): "NAME ok" or why not. */
  rule_extra_calls?: string[];
  /** Layouts of KVM structs read by kvm-trace's BTF reader (vmlinux + kvm module BTF) = bpftool's. */
  btf_check: string;
  abi_check: string;
  leaked_bpf_objects: number;
  /** BPF objects that existed while `kvm-trace attach` ran (the leak check saw something to leak). */
  bpf_objects_while_attached: number;
  teardown_detail?: string;
  /** attach --hw-exits (full and aggregate) against the reference guest (hw-check.ts); absent: not run. */
  hw_exits?: HwResult;
  /** Set by the host side: timings, a retried boot, a failure outside the checklist. */
  boot_s?: number;
  checklist_s?: number;
  wall_s?: number;
  retried?: string;
  failure?: string;
}

export interface Check {
  name: string;
  /** 'ok', 'fail' or 'n/a' (the kernel cannot do it: never a hidden failure). */
  state: 'ok' | 'fail' | 'n/a';
  detail: string;
}

/** ": NAME: why; …" for the copy hooks that were dropped. */
function droppedCopyHooks(r: KernelResult): string {
  const off = Object.entries(r.hooks).filter(([n, h]) => !h.attached && COPY_HOOK.test(n));
  return off.length ? `: ${off.map(([n, h]) => `${n}: ${h.reason ?? 'not attached'}`).join('; ')}` : '';
}

const pct = (x: number): string => `${(x * 100).toFixed(1)}%`;

/** The table's columns, in order ('boot' appears only when a kernel never reached the checklist). */
export const CHECK_NAMES = ['kvm', 'btf', 'strategy', 'copy hooks', 'demo', 'copy rules', 'abi --check', 'teardown', 'hw exits'] as const;

/** The checks of one kernel, in table order. */
export function checksOf(r: KernelResult): Check[] {
  const ok = (name: string, pass: boolean, detail: string): Check => ({ name, state: pass ? 'ok' : 'fail', detail });
  const checks: Check[] = [];
  const kvmDetail = `${r.kvm.kvm}${r.kvm.vendor ? ` (${r.kvm.vendor})` : ''}${r.kvm.kvm === 'module' ? (r.kvm.module_btf ? ', module BTF' : ', no module BTF') : ''}`;
  checks.push(ok('kvm', r.kvm.dev && (r.kvm.kvm !== 'module' || r.kvm.module_btf), r.kvm.dev ? kvmDetail : 'no /dev/kvm'));
  checks.push(ok('btf', r.btf_check.startsWith('ok'), r.btf_check));
  checks.push(ok('strategy', r.strategy !== 'none' && r.demo !== null, r.demo ? `${r.strategy}: ${r.strategy_reason}` : (r.demo_error ?? r.strategy_reason)));
  if (r.kvm.kprobes) {
    checks.push(
      ok(
        'copy hooks',
        r.copy_hooks.length > 0 && r.observed_copies > 0,
        r.copy_hooks.length ? `${r.copy_hooks.join(', ')}: ${r.observed_copies} observed` : `kprobes exist but no copy hook attached${droppedCopyHooks(r)}`,
      ),
    );
  } else {
    checks.push({ name: 'copy hooks', state: 'n/a', detail: 'no kprobes in this kernel: copies are derived' });
  }
  const d = r.demo;
  checks.push(
    d
      ? ok(
          'demo',
          d.issued === d.captured && d.captured === d.matched && d.lost === 0 && d.kvm_run_ok && d.precision === 1 && d.recall === 1,
          `${d.matched}/${d.issued} matched, lost ${d.lost}, kvm_run ${d.kvm_run_ok ? 'ok' : 'WRONG'}, flags P ${pct(d.precision)} R ${pct(d.recall)}`,
        )
      : ok('demo', false, r.demo_error ?? 'did not run'),
  );
  checks.push(
    r.rule_compared_calls > 0
      ? ok('copy rules', r.rule_mismatches === 0, `${r.rule_mismatches} mismatches over ${r.rule_compared_calls} calls${r.rule_details.length ? `: ${r.rule_details[0]}` : ''}`)
      : { name: 'copy rules', state: 'n/a', detail: 'no observed copies to compare' },
  );
  checks.push(ok('abi --check', r.abi_check === 'ok', r.abi_check));
  checks.push(ok('teardown', r.leaked_bpf_objects === 0, r.teardown_detail ?? `${r.leaked_bpf_objects} BPF objects left`));
  checks.push({ name: 'hw exits', ...hwCheckState(r.kvm.vendor, r.hw_exits) });
  if (r.failure) checks.unshift(ok('boot', false, r.failure));
  return checks;
}

export function kernelOk(r: KernelResult): boolean {
  return checksOf(r).every((c) => c.state !== 'fail');
}

/** A row for a kernel whose checklist never reported (boot failure, crash, timeout). */
export function failedRow(kernel: string, failure: string): KernelResult {
  return {
    kernel,
    release: '?',
    kvm: { dev: false, kvm: 'absent', vendor: null, module_btf: false, kprobes: false },
    strategy: 'none',
    strategy_reason: failure,
    hooks: {},
    programs_attached: null,
    copy_hooks: [],
    demo: null,
    demo_error: failure,
    observed_copies: 0,
    derived_copies: 0,
    unknown_copies: 0,
    rule_mismatches: 0,
    rule_compared_calls: 0,
    rule_details: [],
    btf_check: 'not run',
    abi_check: 'not run',
    leaked_bpf_objects: 0,
    bpf_objects_while_attached: 0,
    failure,
  };
}
