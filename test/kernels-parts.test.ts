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
import { checkCopyRules } from '../scripts/kernels/rule-check.js';
import { checksOf, failedRow, kernelOk, type KernelResult } from '../scripts/kernels/result.js';
import { markdownTable, textTable } from '../scripts/kernels/table.js';
import { jobScript, shQuote } from '../scripts/kernels/exec.js';
import { checkPackageName } from '../scripts/kernels/cache.js';
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
  let ts = 1000;
  const call = (arg: bigint, tid = 7): IoctlRecord => {
    const enter = ts;
    ts += 100;
    return {
      type: 'ioctl', ts_ns: ts, enter_ns: enter, pid: 1, tid, comm: 'vmm', fd: 5, fd_kind: 'vcpu', vm: 0, vcpu: 0,
      cmd: `0x${ioctlByName('KVM_SET_REGS').cmd.toString(16)}`, name: 'KVM_SET_REGS', size: regsSize, dir: 'write',
      arg: `0x${arg.toString(16)}`, ret: 0, errno: null, latency_ns: 100,
    };
  };
  const copy = (addr: bigint, len: number, tid = 7): CopyRecord => ({
    type: 'copy', ts_ns: ts + 50, pid: 1, tid, dir: 'from_user', addr: `0x${addr.toString(16)}`, len, cmd: '0x0', name: 'KVM_SET_REGS', fd: 5,
  });
  /** A copy made inside the next call() (copies come before their ioctl record). */
  const pair = (arg: bigint, observed: Array<[bigint, number]>): TraceRecord[] => [...observed.map(([a, l]) => copy(a, l)), call(arg)];
  const check = (recs: TraceRecord[]) => checkCopyRules(recs, { types, lookup: ioctlByName });

  it('agrees when the observed copy is the predicted one', () => {
    const r = check([...pair(0x1000n, [[0x1000n, regsSize]]), ...pair(0x2003n, [[0x2003n, regsSize]])]);
    expect(r).toEqual({ compared_calls: 2, mismatches: 0, details: [] });
  });

  it.each([
    ['another address', [[0x1008n, regsSize]], /observed from_user \d+ bytes at 0x1008; rules predict arg \d+ bytes at 0x1000/],
    ['another length', [[0x1000n, 8]], /observed from_user 8 bytes at 0x1000/],
    ['one copy twice', [[0x1000n, regsSize], [0x1000n, regsSize]], /observed from_user \d+ bytes at 0x1000/],
  ] as const)('reports %s', (_what, observed, detail) => {
    const r = check(pair(0x1000n, observed as unknown as Array<[bigint, number]>));
    expect(r.mismatches).toBe(1);
    expect(r.details[0]).toMatch(detail);
  });

  it('reports a predicted copy of an observed kind that one call did not show', () => {
    const r = check([...pair(0x1000n, [[0x1000n, regsSize]]), ...pair(0x3000n, [])]);
    expect(r.compared_calls).toBe(1);
    expect(r.details).toEqual([`KVM_SET_REGS: rules predict from_user arg ${regsSize} bytes at 0x3000, not observed`]);
  });

  it('compares nothing where nothing was observed (copies through unhooked routines)', () => {
    expect(check([...pair(0x1000n, []), ...pair(0x2000n, [])])).toEqual({ compared_calls: 0, mismatches: 0, details: [] });
  });
});

const row = (over: Partial<KernelResult> = {}): KernelResult => ({
  ...failedRow('linux-image-6.12.111+deb12-amd64', ''),
  failure: undefined,
  release: '6.12.111+deb12-amd64',
  kvm: { dev: true, kvm: 'module', vendor: 'kvm_amd', module_btf: true, kprobes: true },
  strategy: 'kprobe',
  strategy_reason: 'auto: kprobe',
  hooks: { kt_memdup_user: { attached: true }, kt_copy_from_user_kprobe: { attached: false, reason: 'EINVAL' } },
  copy_hooks: ['kt_memdup_user'],
  demo: { issued: 10, captured: 10, matched: 10, lost: 0, precision: 1, recall: 1, kvm_run_ok: true, perfect: true },
  demo_error: undefined,
  observed_copies: 5,
  derived_copies: 20,
  rule_compared_calls: 5,
  btf_check: 'ok: 13 KVM structs',
  abi_check: 'ok',
  bpf_objects_while_attached: 30,
  ...over,
});

describe('verdict', () => {
  it('passes a kernel that meets every check', () => {
    expect(checksOf(row()).map((c) => `${c.name}:${c.state}`)).toEqual([
      'kvm:ok', 'btf:ok', 'strategy:ok', 'copy hooks:ok', 'demo:ok', 'copy rules:ok', 'abi --check:ok', 'teardown:ok',
    ]);
    expect(kernelOk(row())).toBe(true);
  });

  it.each([
    ['no copy hook where kprobes exist', { copy_hooks: [], hooks: { kt_copy_from_user_kprobe: { attached: false, reason: 'EINVAL' } } }, 'copy hooks', 'kt_copy_from_user_kprobe: EINVAL'],
    ['a lost record', { demo: { ...row().demo!, lost: 1 } }, 'demo', 'lost 1'],
    ['a flag missed', { demo: { ...row().demo!, recall: 0.5 } }, 'demo', 'R 50.0%'],
    ['a rule mismatch', { rule_mismatches: 1, rule_details: ['KVM_SET_REGS: …'] }, 'copy rules', 'KVM_SET_REGS'],
    ['a leaked map', { leaked_bpf_objects: 1, teardown_detail: '1 left (map 9)' }, 'teardown', 'map 9'],
    ['an abi mismatch', { abi_check: 'abi --check: 1 mismatch' }, 'abi --check', '1 mismatch'],
    ['no module BTF for a KVM module', { kvm: { ...row().kvm, module_btf: false } }, 'kvm', 'no module BTF'],
    ['an object that did not load', { demo: null, strategy: 'none', demo_error: 'bpf_object__load: EINVAL' }, 'strategy', 'EINVAL'],
  ] as const)('fails on %s', (_what, over, check, detail) => {
    const c = checksOf(row(over as Partial<KernelResult>)).find((x) => x.name === check)!;
    expect(c.state).toBe('fail');
    expect(c.detail).toContain(detail);
  });

  it('says n/a (not fail) where the kernel cannot: no kprobes, nothing observed', () => {
    const r = row({ kvm: { dev: true, kvm: 'built-in', vendor: null, module_btf: false, kprobes: false }, copy_hooks: [], hooks: {}, observed_copies: 0, rule_compared_calls: 0 });
    expect(checksOf(r).filter((c) => c.state === 'n/a').map((c) => c.name)).toEqual(['copy hooks', 'copy rules']);
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
    expect(lines[0]).toMatch(/^kernel\s+kvm\s+btf\s+strategy\s+copy hooks\s+demo\s+copy rules\s+abi --check\s+teardown\s+time$/);
    expect(lines[1]).toMatch(/^host 6\.18\.44\s+ok/);
    expect(t).toContain('linux-image-6.12.111+deb12-amd64 abi --check: FAIL: abi --check: 2 mismatches');
    expect(t.trimEnd().split('\n').pop()).toBe('1 of 2 kernels FAIL');
  });

  it('markdown: the README columns', () => {
    const md = markdownTable([row()]).trim().split('\n');
    expect(md[0]).toBe('| kernel | KVM | strategy | hooks | copies observed / derived | result |');
    expect(md[2]).toBe('| linux-image-6.12.111+deb12-amd64 | module (kvm_amd, module BTF) | kprobe | 1 attached; dropped: kt_copy_from_user_kprobe (EINVAL) | 5 / 20 | pass |');
    const failing = markdownTable([row({ demo: null, strategy: 'none', demo_error: 'loading /src/kt/bpf/x.bpf.o failed: EINVAL' })], '/src/kt');
    expect(failing).toContain('| FAIL: strategy, demo |');
    expect(failing).toContain('- linux-image-6.12.111+deb12-amd64, demo: loading bpf/x.bpf.o failed: EINVAL');
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
