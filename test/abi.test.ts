/**
 * `kvm-trace abi`: the layout report (holes, padding, cache lines) on hand-built layouts and on kvm_run
 * from the kernel's BTF; the ABI check passing on this kernel and failing, naming the struct, on wrong
 * definitions; the failure explainer on request numbers, including a wrong-size request sent to the real
 * /dev/kvm; and the CLI in-process and as a process (one line, non-zero exit on bad input).
 */
import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { Writable } from 'node:stream';
import { Btf, type MemberLayout, type StructLayout } from '../src/btf/index.js';
import { flattenLayout } from '../src/btf/layout.js';
import {
  checkIoctlSizes, checkStructDefs, explainFailure, layoutJson, layoutReport, renderPahole, runAbi, UnknownStructError,
} from '../src/analysis/abi/index.js';
import { ioc, ior, iow, io, KVMIO } from '../src/kvm/abi/ioc.js';
import { IOCTLS, ioctlByName, type IoctlDef } from '../src/kvm/abi/ioctl-table.js';
import { array, struct, u16, u32, u64, u8, type RecordType } from '../src/cdata/layout.js';
import { STRUCTS } from '../src/kvm/abi/structs.js';
import { buildProgram } from '../src/cli/program.js';
import { CliError } from '../src/cli/errors.js';

const VMLINUX = '/sys/kernel/btf/vmlinux';
const haveBtf = existsSync(VMLINUX);
const isRoot = process.getuid?.() === 0;
const haveKvm = existsSync('/dev/kvm');
if (!haveBtf) console.log(`abi.test: skipping kernel BTF tests: ${VMLINUX} missing`);
if (!haveKvm || !isRoot) console.log(`abi.test: skipping the real /dev/kvm ENOTTY test: ${!haveKvm ? 'no /dev/kvm' : 'not root'}`);

/** A hand-built layout: members as [name, offset, size] (ints) or [name, offset, size, bitOffset, bits]. */
function layout(name: string, size: number, members: Array<[string, number, number, number?, number?]>, kind: 'struct' | 'union' = 'struct'): StructLayout {
  return {
    name, kind, id: 0, size, align: 8,
    members: members.map(([n, offset, sz, bitOffset, bits]): MemberLayout => ({
      name: n, offset, bitOffset: bitOffset ?? offset * 8, bitSize: bits ?? 0, size: sz, align: sz, typeId: 0,
      typeName: `__u${sz * 8}`, kind: 'int',
    })),
  };
}

describe('layout report', () => {
  it.each([
    ['no holes', layout('a', 16, [['x', 0, 8], ['y', 8, 8]]), [], 0],
    ['a 7-byte hole after a u8', layout('b', 24, [['a', 0, 1], ['b', 8, 8], ['c', 16, 4]]), [{ offset: 1, size: 7, bits: 0, after: 'a', kind: 'hole' }], 4],
    ['a bit hole after a 3-bit field', layout('c', 8, [['f', 0, 4, 0, 3], ['g', 1, 1]]), [{ offset: 0, size: 0, bits: 5, after: 'f', kind: 'hole' }], 6],
  ])('%s', (_what, l, holes, padding) => {
    const r = layoutReport(l, 64);
    expect(r.holes).toEqual(holes);
    expect(r.padding).toBe(padding);
  });

  it.each([
    ['u64 at 56', 56, 8, 0, false, 1],
    ['u64 at 60 (crosses the 64-byte boundary)', 60, 8, 0, true, 2],
    ['u32 at 64', 64, 4, 1, false, 1],
    ['128 bytes at 32', 32, 128, 0, true, 3],
  ])('%s: line, straddles, lines', (_what, offset, size, line, straddles, lines) => {
    const r = layoutReport(layout('s', 256, [['m', offset, size]]), 64);
    expect(r.members[0]).toMatchObject({ line, straddles, lines });
  });

  it('uses the line size it is given', () => {
    const r = layoutReport(layout('s', 256, [['m', 60, 8]]), 128);
    expect(r.members[0]).toMatchObject({ line: 0, straddles: false });
    expect(r.cachelines).toBe(2);
  });

  it('prints pahole-style holes, boundaries and a straddle note', () => {
    const text = renderPahole(layoutReport(layout('t', 136, [['a', 0, 1], ['b', 8, 8], ['c', 60, 8], ['d', 128, 8]]), 64));
    expect(text).toContain('struct t {');
    expect(text).toContain('/* XXX 7 bytes hole, try to pack */');
    expect(text).toContain('/* XXX 44 bytes hole, try to pack */');
    expect(text).toMatch(/__u64 c;\s+\/\*\s+60\s+8 \*\/\s+\/\* straddles lines 0-1 \(needs 1\) \*\//);
    expect(text).toContain('/* --- cacheline 1 boundary (64 bytes) was 4 bytes ago --- */');
    expect(text).toContain('/* --- cacheline 2 boundary (128 bytes) --- */');
    expect(text).toContain('/* size: 136, cachelines: 3, members: 4 */');
    expect(text).toContain('/* XXX 60 bytes hole, try to pack */');
    expect(text).toContain('/* sum members: 25, holes: 3, sum holes: 111 */');
    expect(text).toContain('/* last cacheline: 8 bytes */');
  });

  it('rejects a nonsensical line size', () => {
    expect(() => layoutReport(layout('a', 8, [['x', 0, 8]]), 0)).toThrow(/positive integer/);
  });
});

describe.skipIf(!haveBtf)('kvm_run from the kernel BTF', () => {
  const btf = haveBtf ? Btf.vmlinux() : undefined;

  it('--json gives size 2352 and member offsets equal to BTF', () => {
    const json = JSON.parse(runAbi(btf!, { structs: ['kvm_run'], json: true, lineSize: 64, check: false, ioctls: IOCTLS, defs: {} }).output) as {
      size: number; members: Array<{ name: string; offset: number; size: number; line: number; straddles: boolean }>;
    };
    expect(json.size).toBe(2352);
    const fromBtf = new Map(flattenLayout(btf!.struct('kvm_run')!).map((m) => [m.path, m]));
    const top = json.members.filter((m) => !m.name.includes('.')).map((m) => m.name);
    expect(top).toEqual(expect.arrayContaining(['exit_reason', 'io', 'mmio', 'hypercall', 'kvm_valid_regs', 's']));
    for (const m of json.members) {
      const b = fromBtf.get(m.name);
      expect(b, m.name).toBeDefined();
      expect([m.name, m.offset, m.size]).toEqual([m.name, b!.offset, b!.size]);
      expect(m.line).toBe(Math.floor(m.offset / 64));
    }
    // HOST.md: hypercall (32..103) crosses line 1; io (32..47) does not.
    expect(json.members.find((m) => m.name === 'hypercall')?.straddles).toBe(true);
    expect(json.members.find((m) => m.name === 'io')?.straddles).toBe(false);
  });

  it('prints the text layout with kvm_run\'s boundaries', () => {
    const text = renderPahole(layoutReport(btf!.struct('kvm_run')!, 64));
    expect(text).toMatch(/__u32 exit_reason;\s+\/\*\s+8\s+4 \*\//);
    expect(text).toMatch(/} io;\s+\/\*\s+32\s+16 \*\//);
    expect(text).toContain('/* size: 2352, cachelines: 37, members: 13 */');
    expect(text).toContain('/* --- cacheline 1 boundary (64 bytes)');
  });

  it('unknown struct names are an error naming the struct', () => {
    expect(() => runAbi(btf!, { structs: ['no_such_thing'], json: false, lineSize: 64, check: false, ioctls: [], defs: {} }))
      .toThrow(UnknownStructError);
  });

  it('--check passes on this kernel with kvm-trace\'s own definitions and ioctl table', () => {
    const r = runAbi(btf!, { structs: [], json: false, lineSize: 64, check: true, ioctls: IOCTLS, defs: STRUCTS });
    expect(r.check?.problems).toEqual([]);
    expect(r.check!.checked.structs).toBe(Object.keys(STRUCTS).length);
    expect(r.check!.checked.ioctls).toBeGreaterThan(50);
    expect(r.output).toContain('ABI check passed');
  });

  const wrongRegs = struct('kvm_regs', ['rax', 'rbx', 'rcx', 'rdx', 'rsi', 'rdi', 'rsp', 'rbp', 'r8', 'r9', 'r10', 'r11', 'r12', 'r13', 'r14', 'r15', 'rip']
    .map((n): [string, typeof u64] => [n, u64])); // rflags forgotten: 136 bytes
  const wrongRegion = struct('kvm_userspace_memory_region', [
    ['slot', u32], ['flags', u64], ['guest_phys_addr', u64], ['memory_size', u64], ['userspace_addr', u64],
  ]); // flags as u64: everything after it moves by 4 (then 8 by alignment)
  const wrongSegment = struct('kvm_segment', [
    ['base', u64], ['limit', u32], ['selector', u32], ['type', u8], ['present', u8], ['dpl', u8], ['db', u8], ['s', u8], ['l', u8], ['g', u8],
    ['avl', u8], ['unusable', u8], ['padding', u8],
  ]); // selector as u32
  const wrongDtable = struct('kvm_dtable', [['base', u64], ['limit', u32], ['padding', array(u16, 2)]]); // limit as u32

  it.each([
    ['kvm_regs without rflags', { kvm_regs: wrongRegs }, 'kvm_regs', /struct kvm_regs: declared 136 bytes, kernel's is 144/],
    ['kvm_userspace_memory_region with a u64 flags', { kvm_userspace_memory_region: wrongRegion }, 'kvm_userspace_memory_region',
      /kvm_userspace_memory_region.guest_phys_addr: declared at offset 16, kernel's is at 8/],
    ['kvm_segment with a u32 selector', { kvm_segment: wrongSegment }, 'kvm_segment', /kvm_segment.selector: declared 4 bytes, kernel's is 2/],
    ['kvm_dtable with a u32 limit', { kvm_dtable: wrongDtable }, 'kvm_dtable', /kvm_dtable.limit: declared 4 bytes, kernel's is 2/],
  ] as Array<[string, Record<string, RecordType>, string, RegExp]>)('--check fails on %s, naming the struct', (_what, defs, tag, msg) => {
    const r = checkStructDefs(btf!, defs);
    expect(r.problems.length).toBeGreaterThan(0);
    expect(r.problems.every((p) => p.subject === tag)).toBe(true);
    expect(r.problems.map((p) => p.message).join('\n')).toMatch(msg);
    const run = runAbi(btf!, { structs: [], json: false, lineSize: 64, check: true, ioctls: [], defs });
    expect(run.problems).toBe(r.problems.length);
    expect(run.output).toContain(`MISMATCH struct ${tag}`);
  });

  it('--check fails on an ioctl whose encoded size is not the kernel\'s', () => {
    const good = ioctlByName('KVM_SET_USER_MEMORY_REGION');
    const bad: IoctlDef = { ...good, size: 24, cmd: iow(KVMIO, good.nr, 24) };
    const r = checkIoctlSizes(btf!, [bad, ioctlByName('KVM_GET_REGS')]);
    expect(r.problems).toEqual([{ kind: 'ioctl-size', subject: 'KVM_SET_USER_MEMORY_REGION', message: expect.stringMatching(/encodes 24 bytes but the kernel's struct kvm_userspace_memory_region is 32/) }]);
    expect(r.checked.ioctls).toBe(2);
  });

  it('checks scalar argument types too (__u64, unsigned long)', () => {
    const r = checkIoctlSizes(btf!, [ioctlByName('KVM_SET_IDENTITY_MAP_ADDR'), ioctlByName('KVM_X86_GET_MCE_CAP_SUPPORTED')]);
    expect(r.checked.ioctls).toBe(2);
    expect(r.problems).toEqual([]);
  });

  describe('explainFailure', () => {
    const region = ioctlByName('KVM_SET_USER_MEMORY_REGION');
    it.each([
      ['a 24-byte KVM_SET_USER_MEMORY_REGION', iow(KVMIO, 0x46, 24), 'ENOTTY', undefined,
        /looks like KVM_SET_USER_MEMORY_REGION but encodes 24 bytes, kernel's struct kvm_userspace_memory_region is 32: the caller's struct definition is wrong/],
      ['a 136-byte KVM_GET_REGS', ior(KVMIO, 0x81, 136), 'EINVAL', undefined, /encodes 136 bytes, kernel's struct kvm_regs is 144/],
      ['the right KVM_SET_USER_MEMORY_REGION', region.cmd, 'EINVAL', undefined, undefined],
      ['KVM_RUN on a VM fd', io(KVMIO, 0x80), 'ENOTTY', 'vm', /KVM_RUN is a vcpu ioctl but was issued on a vm fd/],
      ['KVM_SET_USER_MEMORY_REGION with _IOR', ior(KVMIO, 0x46, 32), 'ENOTTY', undefined, /matches no KVM ioctl; nr 0x46 is KVM_SET_USER_MEMORY_REGION \(_IOW, 32 bytes\)/],
      ['an arm64-only nr', iow(KVMIO, 0xae, 8), 'ENOTTY', undefined, /KVM_ARM_VCPU_INIT, which exists only on another architecture/],
      ['an nr no header has', iow(KVMIO, 0xfe, 8), 'ENOTTY', undefined, /no KVM ioctl has nr 0xfe in the Linux 6\.1/],
      ['a non-KVM request (TCGETS)', 0x5401, 'ENOTTY', undefined, undefined],
      ['another errno', iow(KVMIO, 0x46, 24), 'EFAULT', undefined, undefined],
    ] as Array<[string, number, string, 'vm' | undefined, RegExp | undefined]>)('%s', (_what, cmd, errno, fdKind, want) => {
      const got = explainFailure(cmd, errno, btf!, fdKind);
      if (want === undefined) expect(got).toBeUndefined();
      else expect(got).toMatch(want);
    });

    it.skipIf(!haveKvm || !isRoot)('explains the ENOTTY the real /dev/kvm gives a wrong-size request', async () => {
      const { open, close, ioctlRaw, O_RDWR, O_CLOEXEC } = await import('../src/ffi/libc.js');
      const { errnoName } = await import('../src/ffi/errors.js');
      const kvm = open('/dev/kvm', O_RDWR | O_CLOEXEC);
      let vm = -1;
      try {
        vm = ioctlRaw(kvm, ioctlByName('KVM_CREATE_VM').cmd, 0);
        expect(vm).toBeGreaterThanOrEqual(0);
        const wrong = Buffer.alloc(24); // a caller's 24-byte idea of struct kvm_userspace_memory_region
        const cmd = ioc(1, KVMIO, 0x46, 24);
        const r = ioctlRaw(vm, cmd, wrong);
        expect(r).toBeLessThan(0);
        const errno = errnoName(-r);
        expect(errno).toBe('ENOTTY');
        expect(explainFailure(cmd, errno, btf!, 'vm')).toMatch(/encodes 24 bytes, kernel's struct kvm_userspace_memory_region is 32/);
      } finally {
        if (vm >= 0) close(vm);
        close(kvm);
      }
    });
  });
});

function sink(): { stream: Writable; text: () => string } {
  let buf = '';
  const stream = new Writable({ write(chunk, _enc, cb) { buf += String(chunk); cb(); } });
  return { stream, text: () => buf };
}

async function cli(args: string[]): Promise<{ out: string; err: string; error?: unknown }> {
  const out = sink();
  const err = sink();
  const program = await buildProgram({ stdout: out.stream, stderr: err.stream });
  try {
    await program.parseAsync(['node', 'kvm-trace', ...args]);
    return { out: out.text(), err: err.text() };
  } catch (error) {
    return { out: out.text(), err: err.text(), error };
  }
}

describe.skipIf(!haveBtf)('kvm-trace abi (in process)', () => {
  it('abi --struct kvm_run --json', async () => {
    const r = await cli(['abi', '--struct', 'kvm_run', '--json', '--cacheline', '64']);
    expect(r.error).toBeUndefined();
    const j = JSON.parse(r.out) as { name: string; size: number; align: number; members: unknown[]; holes: unknown[] };
    expect([j.name, j.size, j.align]).toEqual(['kvm_run', 2352, 8]);
  });

  it('several --struct give a JSON array', async () => {
    const r = await cli(['abi', '--struct', 'kvm_regs', '--struct', 'kvm_segment', '--json']);
    expect((JSON.parse(r.out) as Array<{ name: string }>).map((x) => x.name)).toEqual(['kvm_regs', 'kvm_segment']);
  });

  it('abi --check exits cleanly', async () => {
    const r = await cli(['abi', '--check']);
    expect(r.error).toBeUndefined();
    expect(r.out).toContain('ABI check passed');
  });

  it.each([
    [['abi', '--struct', 'nope'], 'input', /no struct or union named "nope"/],
    [['abi', '--cacheline', '48'], 'usage', /--cacheline must be a power of two/],
    [['abi', '--btf', '/nonexistent'], 'input', /\/nonexistent/],
  ])('%j is a %s error', async (args, code, msg) => {
    const r = await cli(args);
    expect(r.error).toBeInstanceOf(CliError);
    expect((r.error as CliError).code).toBe(code);
    expect((r.error as CliError).message).toMatch(msg);
  });
});

const BIN = 'dist/src/cli/main.js';
describe.skipIf(!haveBtf || !existsSync(BIN))('kvm-trace abi (the binary)', () => {
  it('an unknown struct is one line on stderr and exit 1', () => {
    const r = spawnSync(process.execPath, [BIN, 'abi', '--struct', 'nope'], { encoding: 'utf8' });
    expect(r.status).toBe(1);
    expect(r.stderr.trim().split('\n')).toEqual(['kvm-trace: no struct or union named "nope" in /sys/kernel/btf/vmlinux']);
  });
});
