/**
 * Copy hooks, one at a time: which program family each hook tries (fentry first where it works, then
 * kprobe), which hook programs are loaded at all, and attaching each on its own — a hook that cannot attach
 * is dropped with its reason and the rest of the strategy stays. Kernels differ per function: on Debian's
 * 6.1 and 6.12, fentry on _copy_from_user gives EBUSY (not an ftrace site) and a kprobe there is refused,
 * while memdup_user and vmemdup_user take both.
 */
import { type BpfLinkPtr, type BpfProgramPtr, attachProgram } from '../ffi/libbpf.js';
import { errnoName } from '../ffi/errors.js';
import { probeFeature, vmlinuxFuncId } from './features.js';
import { HW_PROGRAMS } from './hw-exits.js';
import { COPY_HOOKS, type CopyHook, type HookFamily, hookProgram, type StrategyOption } from './programs.js';
import type { StrategyChoice } from './strategy.js';

/** What became of one copy hook: attached (with which program) or not, and why. */
export interface HookResult {
  /** The kernel function observed (enum kt_copy_hook's function). */
  hook: string;
  attached: boolean;
  /** The program attached (its family is in the name: _kprobe / _fentry). */
  program?: string;
  /** How it attached, or every reason it did not, one line. */
  reason: string;
}

export interface HookPlan {
  /** Families each hook tries, in order; empty: no hook is tried (`none` says why). */
  families: HookFamily[];
  none: string;
  /** Hook program → why it is not loaded (no BTF for its fentry target; its load failed). */
  notLoaded: Map<string, string>;
}

/** The families the hooks try, from the strategy choice; `force` overrides the probes (tests, diagnosis). */
export function planHooks(choice: StrategyChoice, requested: StrategyOption, aggregate: boolean, force?: HookFamily[]): HookPlan {
  const plan: HookPlan = { families: [], none: '', notLoaded: new Map() };
  if (aggregate) plan.none = 'aggregate mode records no copies';
  else if (force) plan.families = [...force];
  else if (choice.strategy === 'fentry') {
    plan.families = requested === 'auto' && probeFeature('kprobe').status === 'available' ? ['fentry', 'kprobe'] : ['fentry'];
  } else if (choice.strategy === 'kprobe') plan.families = ['kprobe'];
  else if (requested === 'tracepoint') plan.none = 'strategy tracepoint was requested';
  else plan.none = `neither fentry (${probeFeature('fentry').status}) nor kprobe (${probeFeature('kprobe').status}) works here`;
  if (plan.families.includes('fentry')) {
    for (const h of COPY_HOOKS) {
      const id = vmlinuxFuncId(h.hook);
      if (id < 0) plan.notLoaded.set(h.fentry, `no BTF for ${h.hook} (${errnoName(-id)})`);
    }
  }
  return plan;
}

/** The hook programs to autoload: each hook's siblings of the plan's families, minus those known not to load. */
export function hookProgramsToLoad(plan: HookPlan): string[] {
  return COPY_HOOKS.flatMap((h) => plan.families.map((f) => hookProgram(h, f))).filter((p) => !plan.notLoaded.has(p));
}

/** Programs whose load failure drops them (and the load is retried): the copy hooks and the hardware-exit set. */
const HOOK_PROGRAMS = new Set<string>([...COPY_HOOKS.flatMap((h) => [h.kprobe, h.fentry]), ...HW_PROGRAMS]);

/**
 * After a failed load: the hook program libbpf names in `lines` (its log of that load), recorded as not
 * loaded with libbpf's words so the next try leaves it out. Undefined when the failure is not a hook
 * program's: then the load failure is the tracer's.
 */
export function dropFailedHook(plan: HookPlan, lines: string[]): string | undefined {
  for (const line of lines) {
    const m = /prog '([^']+)': (.*)/.exec(line);
    if (!m || !HOOK_PROGRAMS.has(m[1]) || plan.notLoaded.has(m[1])) continue;
    if (!/fail|error|invalid|-\d+/i.test(m[2])) continue;
    plan.notLoaded.set(m[1], `not loaded: ${m[2].trim()}`);
    return m[1];
  }
  return undefined;
}

/**
 * Attach every hook on its own, in COPY_HOOKS order: the first family that attaches wins; a hook covered by
 * an attached one (its copies go through it) stays detached. Links are appended to `links`.
 */
export function attachHooks(plan: HookPlan, progs: Map<string, BpfProgramPtr>, links: BpfLinkPtr[]): HookResult[] {
  const results: HookResult[] = [];
  for (const h of COPY_HOOKS) {
    results.push(attachHook(h, plan, progs, links, results));
  }
  return results;
}

function attachHook(
  h: CopyHook,
  plan: HookPlan,
  progs: Map<string, BpfProgramPtr>,
  links: BpfLinkPtr[],
  done: HookResult[],
): HookResult {
  if (plan.families.length === 0) return { hook: h.hook, attached: false, reason: plan.none };
  const cover = done.find((r) => r.hook === h.coveredBy && r.attached);
  if (cover) return { hook: h.hook, attached: false, reason: `covered by ${cover.hook} (its copies go through it)` };
  const why: string[] = [];
  for (const family of plan.families) {
    const name = hookProgram(h, family);
    const notLoaded = plan.notLoaded.get(name);
    const prog = progs.get(name);
    if (notLoaded || !prog) {
      why.push(`${family}: ${notLoaded ?? 'not loaded'}`);
      continue;
    }
    try {
      links.push(attachProgram(prog));
      return { hook: h.hook, attached: true, program: name, reason: family };
    } catch (err) {
      why.push(`${family}: ${errorLine(err)}`);
    }
  }
  return { hook: h.hook, attached: false, reason: why.join('; ') };
}

/** "bpf_program__attach kt_x: EINVAL" → "EINVAL" (the program is named by the hook already). */
function errorLine(err: unknown): string {
  const msg = (err as Error).message;
  const m = /: ([A-Z0-9]+)$/.exec(msg);
  return m ? m[1] : msg;
}

/** One log line per hook. */
export function hookLine(r: HookResult): string {
  return r.attached ? `hook ${r.hook}: attached (${r.program})` : `hook ${r.hook}: not attached (${r.reason})`;
}

/** Hook results for an explicit program list: attached where the list named one of the hook's programs. */
export function explicitHooks(programs: string[]): HookResult[] {
  return COPY_HOOKS.map((h) => {
    const program = programs.find((p) => p === h.kprobe || p === h.fentry);
    return program
      ? { hook: h.hook, attached: true, program, reason: 'named in the program list' }
      : { hook: h.hook, attached: false, reason: 'not in the program list' };
  });
}
