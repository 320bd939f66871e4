/**
 * The kernel matrix's pure parts (scripts/kernels/): the cpio writer (read back by busybox's own cpio),
 * module load order from modules.dep, the tolerant hook parser on the lines kvm-trace really prints, the
 * copy-rule check on records against the running kernel's BTF, the verdict, and the tables.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { cpioNewc, S_IFCHR, S_IFDIR, S_IFLNK, S_IFREG } from '../scripts/kernels/cpio.js';
import { loadOrder, moduleName, parseModulesDep } from '../scripts/kernels/initramfs.js';
import { attachedCopyHooks, hooksFromJson, normalizeHooks, parseStrategyLines } from '../scripts/kernels/hooks.js';
import { attachedHooksOf, checkCopyRules, mergeRuleChecks, ruleCoverage } from '../scripts/kernels/rule-check.js';
import { checksOf, failedRow, kernelOk, type KernelResult } from '../scripts/kernels/result.js';
import { coverageLines, markdownTable, textTable } from '../scripts/kernels/table.js';
import { jobScript, shQuote } from '../scripts/kernels/exec.js';
import { checkPackageName, DEFAULT_KERNELS, KernelFetchError } from '../scripts/kernels/cache.js';
import { lineOf, newestOf, resolveWith, type ResolveProbes } from '../scripts/kernels/resolve.js';
import { libbpfCause } from '../scripts/kernels/checklist.js';
import { kernelBtf } from '../src/btf/kernel.js';
import { btfTypeSource } from '../src/btf/type-source.js';
import { ioctlByName } from '../src/kvm/abi/ioctl-table.js';
import type { CopyRecord, IoctlRecord, TraceRecord } from '../src/decode/records.js';

describe('cpio newc writer', () => {
  const busybox = existsSync('/bin/busybox') ? '/bin/busybox' : undefined;
  it.skipIf(!busybox)('writes an archive busybox cpio lists back, names and modes intact', () => {
    if (!busybox) console.log('cpio test skipped: no /bin/busybox (Debian package busybox-static)');
    const archive = cpioNewc([
      { name: 'bin', mode: S_IFDIR | 0o755 },
      { name: 'bin/hello', mode: S_IFREG | 0o755, data: Buffer.from('#!/bin/sh\necho hi\n') },
      { name: 'bin/sh', mode: S_IFLNK | 0o777, data: Buffer.from('busybox') },
      { name: 'dev/console', mode: S_IFCHR | 0o600, rdev: { major: 5, minor: 1 } },
      { name: 'odd', mode: S_IFREG | 0o644, data: Buffer.from('x') },
    ]);
    expect(archive.length % 4).toBe(0);
    const r = spawnSync(busybox!, ['cpio', '-tv'], { input: archive, encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    const lines = r.stdout.trim().split('\n');
    expect(lines.map((l) => l.split(/\s+/).slice(-1)[0] === 'busybox' ? l.split(/\s+/).at(-3) : l.split(/\s+/).at(-1))).toEqual([
      'bin', 'bin/hello', 'bin/sh', 'dev/console', 'odd',
    ]);
    expect(lines[1]).toMatch(/^-rwxr-xr-x .* 18 /);
    expect(lines[2]).toMatch(/^lrwxrwxrwx .*bin\/sh -> busybox$/);
    expect(lines[3]).toMatch(/^crw-------/);
  });
});

describe('module load order from modules.dep', () => {
  const dep = parseModulesDep(
    [
      'kernel/fs/netfs/netfs.ko.xz:',
      'kernel/net/9p/9pnet.ko.xz: kernel/fs/netfs/netfs.ko.xz',
      'kernel/net/9p/9pnet_virtio.ko.xz: kernel/net/9p/9pnet.ko.xz kernel/fs/netfs/netfs.ko.xz',
      'kernel/fs/9p/9p.ko.xz: kernel/net/9p/9pnet.ko.xz kernel/fs/netfs/netfs.ko.xz',
      'kernel/arch/x86/kvm/kvm-amd.ko.xz: kernel/drivers/crypto/ccp/ccp.ko.xz kernel/arch/x86/kvm/kvm.ko.xz kernel/virt/lib/irqbypass.ko.xz',
      'kernel/arch/x86/kvm/kvm.ko.xz: kernel/virt/lib/irqbypass.ko.xz',
      'kernel/virt/lib/irqbypass.ko.xz:',
      'kernel/drivers/crypto/ccp/ccp.ko.xz:',
    ].join('\n'),
  );
  it.each([
    ['kernel/arch/x86/kvm/kvm-amd.ko.xz', 'kvm_amd'],
    ['kernel/fs/9p/9p.ko', '9p'],
    ['x/overlay.ko.zst', 'overlay'],
  ])('moduleName(%s) = %s', (path, name) => expect(moduleName(path)).toBe(name));

  it('loads dependencies first, each once; built-ins are skipped', () => {
    const order = loadOrder(['virtio_pci', '9pnet_virtio', '9p'], dep, new Set(['virtio_pci']));
    expect(order.map(moduleName)).toEqual(['netfs', '9pnet', '9pnet_virtio', '9p']);
    expect(loadOrder(['kvm_amd'], dep, new Set()).map(moduleName)).toEqual(['ccp', 'irqbypass', 'kvm', 'kvm_amd']);
  });

  it('names a module that is neither a module nor built in', () => {
    expect(() => loadOrder(['overlay'], dep, new Set())).toThrow('module overlay is neither in modules.dep nor built in');
  });
});

describe('hooks, read tolerantly', () => {
  // Lines kvm-trace printed on Debian's 6.12 (whole-strategy fallback, before per-hook attach).
  const stderr612 = [
    'kvm-trace: mounted tracefs at /sys/kernel/tracing (libbpf needs it to attach tracepoints)',
    'kvm-trace: strategy kprobe: auto: fentry unsupported: fentry programs load but attaching one failed: EBUSY; kprobe: kprobe programs load',
    'kvm-trace: strategy tracepoint: kt_copy_from_user_kprobe could not attach: bpf_program__attach kt_copy_from_user_kprobe: EINVAL',
    'kvm-trace: attached: 7 programs, strategy tracepoint (2142 ms)',
  ].join('\n');

  it('parses strategy, reason, dropped hooks and program count from stderr', () => {
    const s = parseStrategyLines(stderr612);
    expect(s.strategy).toBe('tracepoint');
    expect(s.reason).toBe('kt_copy_from_user_kprobe could not attach: bpf_program__attach kt_copy_from_user_kprobe: EINVAL');
    expect(s.dropped).toEqual({ kt_copy_from_user_kprobe: { attached: false, reason: 'bpf_program__attach kt_copy_from_user_kprobe: EINVAL' } });
    expect(s.programs).toBe(7);
  });

  it.each([
    ['object of booleans', { kt_memdup_user: true, kt_copy_from_user_kprobe: false }],
    ['object of states', { kt_memdup_user: { attached: true }, kt_copy_from_user_kprobe: { attached: false, reason: 'EINVAL' } }],
    ['object of status strings', { kt_memdup_user: 'attached', kt_copy_from_user_kprobe: 'EINVAL' }],
    ['array', [{ name: 'kt_memdup_user', attached: true }, { program: 'kt_copy_from_user_kprobe', ok: false, error: 'EINVAL' }]],
  ])('a hooks %s', (_what, raw) => {
    const h = normalizeHooks(raw)!;
    expect(h.kt_memdup_user.attached).toBe(true);
    expect(h.kt_copy_from_user_kprobe.attached).toBe(false);
    expect(attachedCopyHooks(h)).toEqual(['kt_memdup_user']);
  });

  it('takes hooks from the first JSON that has them (summary, then demo result, then attach info)', () => {
    expect(hooksFromJson(undefined, { strategy: 'x' }, { attach: { hooks: { kt_memdup_user: true } } })).toEqual({ kt_memdup_user: { attached: true } });
    expect(hooksFromJson({ hooks: {} }, null)).toBeUndefined();
  });

  it("finds libbpf's own reason for a failed load", () => {
    const err = [
      "kvm-trace: libbpf: extern (ksym) 'kvm_vcpu_ioctl': set to 0xffffffffc04b0f90",
      "kvm-trace: libbpf: extern (func ksym) 'bpf_rdonly_cast': not found in kernel or module BTFs",
      "kvm-trace: libbpf: failed to load object '/x/kvm_trace.bpf.o'",
      'kvm-trace: loading /x/kvm_trace.bpf.o failed: bpf_object__load: EINVAL',
    ].join('\n');
    expect(libbpfCause(err)).toBe("libbpf: extern (func ksym) 'bpf_rdonly_cast': not found in kernel or module BTFs");
  });
});

describe('copy rules vs observed copies', () => {
  const types = btfTypeSource(kernelBtf());
  const regsSize = types.struct('kvm_regs')!.size;
  const entry = types.struct('kvm_msr_entry')!.size;
  const msrsHead = types.struct('kvm_msrs')!.size;
  let ts = 1000;
  const call = (name: string, arg: bigint, args?: Record<string, unknown>, tid = 7): IoctlRecord => {
    const enter = ts;
    ts += 100;
    const d = ioctlByName(name);
    return {
      type: 'ioctl', ts_ns: ts, enter_ns: enter, pid: 1, tid, comm: 'vmm', fd: 5, fd_kind: 'vcpu', vm: 0, vcpu: 0,
      cmd: `0x${d.cmd.toString(16)}`, name, size: d.size, dir: d.dir, arg: `0x${arg.toString(16)}`, ret: 0, errno: null, latency_ns: 100, args,
    };
  };
  const copy = (addr: bigint, len: number, hook = 'memdup_user', dir: CopyRecord['dir'] = 'from_user'): CopyRecord => ({
    type: 'copy', ts_ns: ts + 50, pid: 1, tid: 7, dir, addr: `0x${addr.toString(16)}`, len, cmd: '0x0', name: '', fd: 5, hook,
  });
  type Obs = [bigint, number, string?, CopyRecord['dir']?];
  /** Copies made inside the next call (copies come before their ioctl record). */
  const pair = (name: string, arg: bigint, observed: Obs[], args?: Record<string, unknown>): TraceRecord[] =>
    [...observed.map(([a, l, h, d]) => copy(a, l, h, d)), call(name, arg, args)];
  const memdupOnly = ['memdup_user', 'vmemdup_user'];
  const check = (recs: TraceRecord[], hooks = memdupOnly) => checkCopyRules(recs, { types, lookup: ioctlByName, hooks });

  it('agrees when each copy through a hooked routine is observed as predicted', () => {
    const r = check([
      ...pair('KVM_SET_REGS', 0x1000n, [[0x1000n, regsSize]]),
      ...pair('KVM_SET_REGS', 0x2003n, [[0x2003n, regsSize]]),
      // KVM_GET_MSRS: only the entries go through memdup_user; header (copy_from_user) and write-back
      // (copy_to_user) cannot be observed with these hooks.
      ...pair('KVM_GET_MSRS', 0x4000n, [[0x4000n + BigInt(msrsHead), 2 * entry]], { nmsrs: 2 }),
      ...pair('KVM_GET_REGS', 0x5000n, []),
    ]);
    expect({ ...r, by_ioctl: undefined }).toEqual({ compared_calls: 3, mismatches: 0, details: [], hooks: memdupOnly, by_ioctl: undefined });
    expect(r.by_ioctl.KVM_GET_MSRS).toEqual({ calls: 1, compared: 1, observed: 1, unobservable: 2, unobservable_via: ['copy_from_user', 'copy_to_user'], mismatches: 0 });
    expect(ruleCoverage(r.by_ioctl)).toEqual({
      checked: ['KVM_SET_REGS'],
      partly: ['KVM_GET_MSRS'],
      unobservable: { KVM_GET_REGS: 'through copy_to_user, which no attached hook sees' },
      nothing: [],
    });
  });

  it.each([
    ['another address', [[0x1008n, regsSize]], /observed from_user \d+ bytes at 0x1008 \(memdup_user\); rules predict arg \d+ bytes at 0x1000 via memdup_user/],
    ['another length', [[0x1000n, 8]], /rules predict from_user arg \d+ bytes at 0x1000 via memdup_user, not observed/],
    ['one copy twice', [[0x1000n, regsSize], [0x1000n, regsSize]], /observed from_user \d+ bytes at 0x1000/],
    ['no copy', [], /rules predict from_user arg \d+ bytes at 0x1000 via memdup_user, not observed/],
    ['a hook that does not see the routine', [[0x1000n, regsSize, 'vmemdup_user']], /arg observed by vmemdup_user, but the rules say it goes through memdup_user/],
  ] as const)('reports %s', (_what, observed, detail) => {
    const r = check(pair('KVM_SET_REGS', 0x1000n, observed as unknown as Obs[]));
    expect(r.mismatches).toBeGreaterThanOrEqual(1);
    expect(r.details.join('\n')).toMatch(detail);
  });

  it('a copy made in pieces (KVM_GET_MSR_INDEX_LIST) must be tiled by that many contiguous copies', () => {
    const all = ['_copy_from_user', '_copy_to_user'];
    const list = (obs: Obs[]) => check(pair('KVM_GET_MSR_INDEX_LIST', 0x7000n, [[0x7000n, 4, '_copy_from_user'], [0x7000n, 4, '_copy_to_user', 'to_user'], ...obs], { nmsrs: 5 }), all);
    expect(list([[0x7004n, 12, '_copy_to_user', 'to_user'], [0x7010n, 8, '_copy_to_user', 'to_user']]).mismatches).toBe(0);
    const whole = list([[0x7004n, 20, '_copy_to_user', 'to_user']]);
    expect(whole.details.join('\n')).toMatch(/kvm_msr_list.indices 20 bytes at 0x7004 via copy_to_user in 2 pieces, not observed/);
  });

  it('zero-length copies are no copies; with no hooks nothing is compared', () => {
    expect(check(pair('KVM_SET_MSRS', 0x4000n, [[0x4008n, 0]], { nmsrs: 0 })).mismatches).toBe(0);
    const r = check([...pair('KVM_SET_REGS', 0x1000n, []), ...pair('KVM_GET_REGS', 0x2000n, [])], []);
    expect([r.compared_calls, r.mismatches]).toEqual([0, 0]);
    expect(Object.keys(ruleCoverage(r.by_ioctl).unobservable)).toEqual(['KVM_GET_REGS', 'KVM_SET_REGS']);
  });

  it('merges the demo\'s comparison with the extra ioctls\' one', () => {
    const a = check([...pair('KVM_SET_REGS', 0x1000n, [[0x1000n, regsSize]]), ...pair('KVM_GET_REGS', 0x5000n, [])]);
    const b = check([...pair('KVM_SET_REGS', 0x2000n, [[0x2008n, regsSize]]), ...pair('KVM_SET_XCRS', 0x3000n, [[0x3000n, types.struct('kvm_xcrs')!.size]])]);
    const m = mergeRuleChecks(a, b);
    expect([m.compared_calls, m.mismatches, m.details.length]).toEqual([3, 2, 2]);
    expect(m.by_ioctl.KVM_SET_REGS).toMatchObject({ calls: 2, compared: 2, observed: 2, mismatches: 2 });
    expect(Object.keys(m.by_ioctl).sort()).toEqual(['KVM_GET_REGS', 'KVM_SET_REGS', 'KVM_SET_XCRS']);
    expect(a.by_ioctl.KVM_SET_REGS.calls).toBe(1); // the inputs are left alone
  });

  it('takes the attached hooks from the summary, else from the hooks the copies name', () => {
    const summary = { type: 'summary', hooks: { memdup_user: { attached: true, reason: 'fentry' }, _copy_to_user: { attached: false, reason: 'EBUSY' } } } as unknown as TraceRecord;
    expect(attachedHooksOf([summary])).toEqual(['memdup_user']);
    expect(attachedHooksOf([copy(0x1000n, 8, 'vmemdup_user'), copy(0x1000n, 8, 'vmemdup_user')])).toEqual(['vmemdup_user']);
  });
});

const row = (over: Partial<KernelResult> = {}): KernelResult => ({
  ...failedRow('linux-image-6.12.111+deb12-amd64', ''),
  failure: undefined,
  release: '6.12.111+deb12-amd64',
  kvm: { dev: true, kvm: 'module', vendor: 'kvm_amd', module_btf: true, kprobes: true },
  strategy: 'kprobe',
  strategy_reason: 'auto: kprobe',
  hooks: { _copy_from_user: { attached: false, reason: 'fentry: EBUSY; kprobe: EINVAL' }, memdup_user: { attached: true, reason: 'kprobe' } },
  copy_hooks: ['memdup_user'],
  demo: { issued: 10, captured: 10, matched: 10, lost: 0, precision: 1, recall: 1, kvm_run_ok: true, perfect: true },
  demo_error: undefined,
  observed_copies: 5,
  derived_copies: 20,
  rule_compared_calls: 5,
  btf_check: 'ok: 13 KVM structs',
  abi_check: 'ok',
  bpf_objects_while_attached: 30,
  hw_exits: {
    available: true,
    statement: 'hardware exits counted: 5101 kvm:kvm_exit in 2001 KVM_RUN calls',
    names: 'tracefs kvm:kvm_exit format',
    rows: [{ isa: 'SVM', reason: 'io', samples: 2000, p50_ns: 40000, time_pct: 60 }, { isa: 'SVM', reason: 'npf', samples: 1000, p50_ns: 9000, time_pct: 20 }],
    record_runs: 2001,
    record_hw_exits: 5101,
    aggregate_hw_exits: 5101,
    split: null,
    fields_without_events: 0,
  },
  ...over,
});

/** What --hw-exits says on PVM: the statement, no fields. */
const pvmHw = {
  ...row().hw_exits!,
  available: false,
  statement: 'kvm:kvm_exit does not fire on this kernel (2001 KVM_RUN calls, 0 hardware exits; …): hardware-exit fields left out',
  rows: [],
  record_hw_exits: 0,
  aggregate_hw_exits: 0,
};

describe('verdict', () => {
  it('passes a kernel that meets every check', () => {
    expect(checksOf(row()).map((c) => `${c.name}:${c.state}`)).toEqual([
      'kvm:ok', 'btf:ok', 'strategy:ok', 'copy hooks:ok', 'demo:ok', 'copy rules:ok', 'abi --check:ok', 'teardown:ok', 'hw exits:ok',
    ]);
    expect(kernelOk(row())).toBe(true);
  });

  it.each([
    ['no copy hook where kprobes exist', { copy_hooks: [], hooks: { _copy_from_user: { attached: false, reason: 'kprobe: EINVAL' } } }, 'copy hooks', '_copy_from_user: kprobe: EINVAL'],
    ['a lost record', { demo: { ...row().demo!, lost: 1 } }, 'demo', 'lost 1'],
    ['a flag missed', { demo: { ...row().demo!, recall: 0.5 } }, 'demo', 'R 50.0%'],
    ['a rule mismatch', { rule_mismatches: 1, rule_details: ['KVM_SET_REGS: …'] }, 'copy rules', 'KVM_SET_REGS'],
    ['a leaked map', { leaked_bpf_objects: 1, teardown_detail: '1 left (map 9)' }, 'teardown', 'map 9'],
    ['an abi mismatch', { abi_check: 'abi --check: 1 mismatch' }, 'abi --check', '1 mismatch'],
    ['no module BTF for a KVM module', { kvm: { ...row().kvm, module_btf: false } }, 'kvm', 'no module BTF'],
    ['an object that did not load', { demo: null, strategy: 'none', demo_error: 'bpf_object__load: EINVAL' }, 'strategy', 'EINVAL'],
    ['no hardware exits on kvm_amd', { hw_exits: pvmHw }, 'hw exits', 'does not fire'],
    ['hardware exits named by number', { hw_exits: { ...row().hw_exits!, rows: [{ isa: 'SVM', reason: '0x7b', samples: 2000, p50_ns: 1, time_pct: 100 }] } }, 'hw exits', '0x7b 2000'],
    ['records and aggregate counting differently', { hw_exits: { ...row().hw_exits!, aggregate_hw_exits: 5100 } }, 'hw exits', '5101 in 2001 KVM_RUNs (records) vs 5100'],
    ['hw fields without the events', { kvm: { dev: true, kvm: 'built-in', vendor: null, module_btf: false, kprobes: false }, hw_exits: { ...pvmHw, fields_without_events: 3 } }, 'hw exits', 'expected the "does not fire" statement'],
  ] as const)('fails on %s', (_what, over, check, detail) => {
    const c = checksOf(row(over as Partial<KernelResult>)).find((x) => x.name === check)!;
    expect(c.state).toBe('fail');
    expect(c.detail).toContain(detail);
  });

  it('says n/a (not fail) where the kernel cannot: no kprobes, nothing observed', () => {
    const r = row({ kvm: { dev: true, kvm: 'built-in', vendor: null, module_btf: false, kprobes: false }, copy_hooks: [], hooks: {}, observed_copies: 0, rule_compared_calls: 0, hw_exits: pvmHw });
    expect(checksOf(r).filter((c) => c.state === 'n/a').map((c) => c.name)).toEqual(['copy hooks', 'copy rules', 'hw exits']);
    expect(kernelOk(r)).toBe(true);
  });

  it('a boot that never reached the checklist fails with its reason', () => {
    const r = failedRow('linux-image-x', 'kernel crashed while booting: int3: 0000 [#1] SMP');
    expect(kernelOk(r)).toBe(false);
    expect(checksOf(r)[0]).toEqual({ name: 'boot', state: 'fail', detail: 'kernel crashed while booting: int3: 0000 [#1] SMP' });
  });
});

describe('tables', () => {
  it('text: one row per kernel, one note per check that is not ok, the verdict', () => {
    const t = textTable([row({ kernel: 'host', release: '6.18.44' }), row({ abi_check: 'abi --check: 2 mismatches' })]);
    const lines = t.split('\n');
    expect(lines[0]).toMatch(/^kernel\s+kvm\s+btf\s+strategy\s+copy hooks\s+demo\s+copy rules\s+abi --check\s+teardown\s+hw exits\s+time$/);
    expect(lines[1]).toMatch(/^host 6\.18\.44\s+ok/);
    expect(t).toContain('linux-image-6.12.111+deb12-amd64 abi --check: FAIL: abi --check: 2 mismatches');
    expect(t.trimEnd().split('\n').pop()).toBe('1 of 2 kernels FAIL');
  });

  it('markdown: the README columns', () => {
    const md = markdownTable([row()]).trim().split('\n');
    expect(md[0]).toBe('| kernel | KVM | strategy | hooks | copies observed / derived | result |');
    expect(md[2]).toBe('| linux-image-6.12.111+deb12-amd64 | module (kvm_amd, module BTF) | kprobe | attached: memdup_user (kprobe); not attached: _copy_from_user (fentry: EBUSY; kprobe: EINVAL) | 5 / 20 | pass |');
    const failing = markdownTable([row({ demo: null, strategy: 'none', demo_error: 'loading /src/kt/bpf/x.bpf.o failed: EINVAL' })], '/src/kt');
    expect(failing).toContain('| FAIL: strategy, demo |');
    expect(failing).toContain('- linux-image-6.12.111+deb12-amd64, demo: loading bpf/x.bpf.o failed: EINVAL');
  });

  it('both say which ioctls had their copy rules checked against observed copies and which could not be', () => {
    const r = row({
      rule_hooks: ['memdup_user', 'vmemdup_user'],
      rule_by_ioctl: {
        KVM_GET_MSRS: { calls: 2, compared: 2, observed: 2, unobservable: 4, unobservable_via: ['copy_from_user', 'copy_to_user'], mismatches: 0 },
        KVM_GET_REGS: { calls: 2, compared: 0, observed: 0, unobservable: 2, unobservable_via: ['copy_to_user'], mismatches: 0 },
        KVM_GET_SREGS: { calls: 2, compared: 0, observed: 0, unobservable: 2, unobservable_via: ['copy_to_user'], mismatches: 0 },
      },
      rule_coverage: {
        checked: ['KVM_SET_REGS', 'KVM_SET_SREGS'],
        partly: ['KVM_GET_MSRS'],
        unobservable: { KVM_GET_REGS: 'through copy_to_user, which no attached hook sees', KVM_GET_SREGS: 'through copy_to_user, which no attached hook sees' },
        nothing: ['KVM_RUN'],
      },
      rule_extra_calls: ['KVM_SET_XCRS ok', 'KVM_SET_SREGS2: EINVAL'],
      package_note: 'linux-image-6.12.111+deb12-amd64 is not in the cache and apt cannot download it: the newest of the 6.12 line apt knows, linux-image-6.12.118+deb12-amd64, is used instead',
    });
    expect(coverageLines(r)).toEqual([
      'copy rules checked against copies observed by memdup_user, vmemdup_user: KVM_SET_REGS, KVM_SET_SREGS',
      'partly checked (not their copies through copy_from_user, copy_to_user): KVM_GET_MSRS',
      'not observable (their copies go through copy_to_user, which no attached hook sees): KVM_GET_REGS, KVM_GET_SREGS',
      'copy nothing: KVM_RUN',
      "extra ioctls (beyond the guest's) that failed here, not compared: KVM_SET_SREGS2: EINVAL",
    ]);
    const t = textTable([r]);
    expect(t).toContain('  linux-image-6.12.111+deb12-amd64 partly checked (not their copies through copy_from_user, copy_to_user): KVM_GET_MSRS');
    expect(t).toContain('  linux-image-6.12.111+deb12-amd64: linux-image-6.12.111+deb12-amd64 is not in the cache');
    expect(markdownTable([r])).toContain('- linux-image-6.12.111+deb12-amd64: not observable (their copies go through copy_to_user, which no attached hook sees): KVM_GET_REGS, KVM_GET_SREGS');
  });
});

describe('guest job and package names', () => {
  it('quotes for sh', () => {
    const r = spawnSync('sh', ['-c', `printf %s ${shQuote("it's $HOME `x`")}`], { encoding: 'utf8' });
    expect(r.stdout).toBe("it's $HOME `x`");
  });

  it('runs the command in the given folder with a usable PATH', () => {
    expect(jobScript('uname -r', "/root/my checkout")).toBe(
      "export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 TERM=dumb KT_OUT=/run/kt-matrix KT_GUEST=1\ncd '/root/my checkout' || exit 127\nuname -r\n",
    );
  });

  it.each([['linux-image-6.1.0-47-amd64', true], ['linux-image-6.12.111+deb12-amd64', true], ['bash', false], ['linux-image-x;rm -rf /', false]])(
    'package name %s accepted: %s',
    (name, ok) => {
      if (ok) expect(() => checkPackageName(name)).not.toThrow();
      else expect(() => checkPackageName(name)).toThrow(/is not a Debian kernel image package name/);
    },
  );
});

describe('pinned default kernels: kept while cached or downloadable, else the newest of their line', () => {
  const APT = [
    'linux-image-6.1.0-47-amd64', 'linux-image-6.1.0-50-amd64', 'linux-image-6.1.0-9-amd64', 'linux-image-6.1.0-50-amd64-unsigned',
    'linux-image-6.1.0-51-cloud-amd64', 'linux-image-6.1.0-52-amd64-dbg', 'linux-image-6.10.0-1-amd64',
    'linux-image-6.12.111+deb12-amd64', 'linux-image-6.12.118+deb12-amd64', 'linux-image-6.12.99+deb12-amd64',
    'linux-image-6.12.120+deb13-amd64', 'linux-image-6.12.119+deb12-rt-amd64', 'linux-image-6.120.1+deb12-amd64',
  ];

  it.each([
    ['linux-image-6.1.0-47-amd64', '6.1', 'linux-image-6.1.0-50-amd64'],
    ['linux-image-6.12.111+deb12-amd64', '6.12', 'linux-image-6.12.118+deb12-amd64'],
    ['linux-image-6.1.0-47-cloud-amd64', '6.1', 'linux-image-6.1.0-51-cloud-amd64'],
  ])('%s is in the %s line, whose newest here is %s', (pkg, name, newest) => {
    const line = lineOf(pkg)!;
    expect(line.name).toBe(name);
    expect(newestOf(line, APT)).toBe(newest);
  });

  it('orders by patch level, then ABI number; names of other shapes have no line', () => {
    const line = lineOf('linux-image-6.1.0-47-amd64')!;
    expect(newestOf(line, ['linux-image-6.1.0-9-amd64', 'linux-image-6.1.0-10-amd64', 'linux-image-6.1.2-1-amd64'])).toBe('linux-image-6.1.2-1-amd64');
    expect(lineOf('linux-image-amd64')).toBeUndefined();
    expect(DEFAULT_KERNELS.every((k) => lineOf(k) !== undefined)).toBe(true);
  });

  const probes = (o: { cached?: string[]; apt?: string[]; afterUpdate?: string[] }) => {
    const calls: string[] = [];
    let apt = o.apt ?? [];
    const p: ResolveProbes = {
      cached: (n) => (o.cached ?? []).includes(n),
      downloadable: (n) => apt.includes(n),
      search: (re) => apt.filter((n) => re.test(n)),
      update: () => {
        calls.push('update');
        if (!o.afterUpdate) return false;
        apt = o.afterUpdate;
        return true;
      },
    };
    return { p, calls };
  };
  const PIN = 'linux-image-6.12.111+deb12-amd64';

  it('keeps the pinned package when it is cached, even if apt no longer knows it', () => {
    const { p, calls } = probes({ cached: [PIN], apt: ['linux-image-6.12.118+deb12-amd64'] });
    expect(resolveWith(PIN, p)).toEqual({ pkg: PIN });
    expect(calls).toEqual([]);
  });

  it('keeps it when apt can download it', () => {
    expect(resolveWith(PIN, probes({ apt: APT }).p)).toEqual({ pkg: PIN });
  });

  it('falls back to the newest of the line apt knows, and says so', () => {
    const { p, calls } = probes({ apt: APT.filter((n) => n !== PIN), afterUpdate: APT.filter((n) => n !== PIN) });
    const r = resolveWith(PIN, p);
    expect(r.pkg).toBe('linux-image-6.12.118+deb12-amd64');
    expect(r.note).toBe(`${PIN} is not cached and apt cannot download it: using linux-image-6.12.118+deb12-amd64, the newest package of the 6.12 line apt knows`);
    expect(calls).toEqual(['update']);
  });

  it('runs apt-get update once when apt does not know the pinned package (empty lists on a fresh machine)', () => {
    expect(resolveWith(PIN, probes({ apt: [], afterUpdate: APT }).p)).toEqual({ pkg: PIN, note: `apt knew ${PIN} only after apt-get update` });
    const r = resolveWith(PIN, probes({ apt: [], afterUpdate: ['linux-image-6.12.120+deb12-amd64'] }).p);
    expect(r.pkg).toBe('linux-image-6.12.120+deb12-amd64');
  });

  it('fails with one line when nothing of the line can be had', () => {
    expect(() => resolveWith(PIN, probes({ apt: ['linux-image-6.1.0-50-amd64'] }).p)).toThrow(KernelFetchError);
    expect(() => resolveWith(PIN, probes({}).p)).toThrow(`${PIN} is neither cached nor downloadable, and apt knows no other package of the 6.12 line: name one with --kernel`);
  });
});
