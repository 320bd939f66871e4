// Copy hooks attach one by one: a hook the kernel refuses is reported with its reason and the rest of the
// tracer (the tracepoint base set, the other hooks) stays; aggregate mode loads no copy program at all.
// On this machine kind kprobes are compiled out and fentry is refused, so every hook reports "not
// attached" with the kernel's answer — forcing the families makes the per-hook attach and the load retry
// really run against the kernel. Where a family works, at least one hook must attach.
import { describe, expect, it } from 'vitest';
import { KT_F_RUN } from '../src/bpf/event-layout.js';
import { ioctlByName } from '../src/kvm/abi/ioctl-table.js';
import { probeFeature, vmlinuxFuncId } from '../src/bpf/features.js';
import { BPF_ATTACH_TYPE, findVmlinuxBtfId } from '../src/ffi/libbpf.js';
import { planHooks } from '../src/bpf/hooks.js';
import { BASE_PROGRAMS, COPY_HOOKS, FENTRY_PROGRAMS, KPROBE_PROGRAMS } from '../src/bpf/programs.js';
import { KvmTracer } from '../src/bpf/tracer.js';
import { bpfSkipReason, RingCollector, runPioGuest } from './bpf-support.js';

const skip = bpfSkipReason();
if (skip) console.log(`bpf-hooks tests skipped: ${skip}`);

const HOOK_NAMES = COPY_HOOKS.map((h) => h.hook);
const KVM_RUN = ioctlByName('KVM_RUN').cmd;

/** Open with `opts` (this process only), run the guest, check the base capture still works, close. */
function openAndCapture(opts: Parameters<typeof KvmTracer.open>[0]): { tracer: KvmTracer; logs: string[]; progs: number } {
  const logs: string[] = [];
  const tracer = KvmTracer.open({ pids: [process.pid], ...opts, log: (l) => logs.push(l) });
  const ring = new RingCollector(tracer.ringMapFd);
  try {
    const progs = tracer.ids().progs.length;
    runPioGuest();
    const runs = ring.drain().ioctls.filter((e) => e.cmd === KVM_RUN);
    expect(runs).toHaveLength(2);
    for (const e of runs) expect(e.flags & KT_F_RUN).toBe(KT_F_RUN);
    return { tracer, logs, progs };
  } finally {
    ring.free();
    tracer.close();
  }
}

describe('hook plan (no kernel)', () => {
  it.each(['fentry', 'kprobe', 'tracepoint'] as const)('aggregate mode tries no hook under strategy %s', (strategy) => {
    const plan = planHooks({ strategy, reason: 'test' }, strategy, true, ['fentry', 'kprobe']);
    expect(plan.families).toEqual([]);
    expect(plan.none).toMatch(/aggregate/);
  });

  it('every hook has a kprobe and an fentry sibling; covering hooks come first', () => {
    expect(KPROBE_PROGRAMS).toHaveLength(COPY_HOOKS.length);
    expect(FENTRY_PROGRAMS).toHaveLength(COPY_HOOKS.length);
    for (const [i, h] of COPY_HOOKS.entries()) {
      if (h.coveredBy) expect(HOOK_NAMES.indexOf(h.coveredBy)).toBeLessThan(i);
    }
  });
});

describe.skipIf(skip !== undefined)('copy hooks on this kernel', () => {
  it.each(HOOK_NAMES.concat('no_such_function_kt'))('the fentry target id of %s is the one libbpf finds', (fn) => {
    expect(vmlinuxFuncId(fn)).toBe(findVmlinuxBtfId(fn, BPF_ATTACH_TYPE.TRACE_FENTRY));
  });

  it('auto: every hook reports attached or not with a reason; the base set attaches either way', () => {
    const { tracer, logs } = openAndCapture({});
    expect(tracer.hooks.map((h) => h.hook)).toEqual(HOOK_NAMES);
    for (const h of tracer.hooks) {
      expect(h.reason.length).toBeGreaterThan(0);
      expect(h.reason).not.toContain('\n');
      expect(logs).toContain(h.attached ? `hook ${h.hook}: attached (${h.program})` : `hook ${h.hook}: not attached (${h.reason})`);
    }
    expect(tracer.programs.slice(0, BASE_PROGRAMS.length)).toEqual([...BASE_PROGRAMS]);
    const fentry = probeFeature('fentry').status;
    const kprobe = probeFeature('kprobe').status;
    if (fentry === 'unsupported' && kprobe === 'unsupported') {
      expect(tracer.strategy).toBe('tracepoint');
      for (const h of tracer.hooks) expect(h).toEqual({ hook: h.hook, attached: false, reason: 'neither fentry (unsupported) nor kprobe (unsupported) works here' });
    } else {
      // A family works here: it must carry at least one hook (memdup_user is an ftrace site everywhere seen).
      expect(tracer.hooks.some((h) => h.attached), JSON.stringify(tracer.hooks)).toBe(true);
    }
  });

  it('kprobe forced: each hook tries its own kprobe; one that cannot attach leaves the rest standing', () => {
    const { tracer, progs } = openAndCapture({ hookFamilies: ['kprobe'] });
    expect(progs).toBe(BASE_PROGRAMS.length + KPROBE_PROGRAMS.length); // the kprobe programs loaded (verified)
    for (const h of tracer.hooks) {
      if (h.attached) expect(h.program).toMatch(/_kprobe$/);
      else expect(h.reason, h.hook).toMatch(/^kprobe: [A-Z]+$/);
    }
    if (probeFeature('kprobe').status === 'unsupported') {
      expect(tracer.hooks.every((h) => !h.attached)).toBe(true);
      expect(tracer.programs).toEqual([...BASE_PROGRAMS]);
    }
  });

  it('fentry forced: programs the kernel refuses to load are dropped one by one, the object still loads', () => {
    const { tracer, logs } = openAndCapture({ hookFamilies: ['fentry'] });
    if (probeFeature('fentry').status !== 'unsupported') {
      expect(tracer.hooks.some((h) => h.attached)).toBe(true);
      return;
    }
    for (const h of tracer.hooks) {
      expect(h.attached).toBe(false);
      expect(h.reason).toMatch(/^fentry: (not loaded: |no BTF for )/);
    }
    expect(logs.filter((l) => /_fentry cannot load here/.test(l)).length).toBeGreaterThan(0);
    expect(tracer.programs).toEqual([...BASE_PROGRAMS]);
  });

  it('openAsync, fentry forced: a quiet load the kernel refuses is loaded again with the log, as open() does', async () => {
    const logs: string[] = [];
    const tracer = await KvmTracer.openAsync({ pids: [process.pid], hookFamilies: ['fentry'], log: (l) => logs.push(l) });
    const ring = new RingCollector(tracer.ringMapFd);
    try {
      runPioGuest();
      expect(ring.drain().ioctls.filter((e) => e.cmd === KVM_RUN)).toHaveLength(2);
      if (probeFeature('fentry').status !== 'unsupported') {
        expect(tracer.hooks.some((h) => h.attached)).toBe(true);
        return;
      }
      expect(logs.filter((l) => /_fentry cannot load here/.test(l)).length).toBeGreaterThan(0);
      expect(tracer.programs).toEqual([...BASE_PROGRAMS]);
    } finally {
      ring.free();
      tracer.close();
    }
  });

  it('aggregate mode loads and attaches no copy program, whatever families are asked for', () => {
    const tracer = KvmTracer.open({ pids: [process.pid], aggregate: true, hookFamilies: ['kprobe', 'fentry'] });
    try {
      expect(tracer.ids().progs).toHaveLength(BASE_PROGRAMS.length);
      expect(tracer.programs).toEqual([...BASE_PROGRAMS]);
      for (const h of tracer.hooks) expect(h).toEqual({ hook: h.hook, attached: false, reason: 'aggregate mode records no copies' });
    } finally {
      tracer.close();
    }
  });
});
