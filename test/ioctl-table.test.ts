/**
 * The generated KVM ioctl table against the header it came from (re-parsed here with a separate, simpler
 * reading), against the C compiler (the committed numbers are what the header gives today), against the
 * ioctl encoding, and against the running kernel's BTF sizes of each argument struct.
 */
import { describe, expect, it } from 'vitest';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decodeIoc, ioc, KVMIO } from '../src/kvm/abi/ioc.js';
import {
  capName, capValue, exitReasonName, IOCTLS, ioctlByCmd, ioctlByName, ioctlByTypeNr, ioctlsByCmd, UNAVAILABLE_IOCTLS,
} from '../src/kvm/abi/ioctl-table.js';
import { KVM_EXIT } from '../src/kvm/abi/exit-reasons.generated.js';
import { Btf } from '../src/btf/index.js';

const HEADER = '/usr/include/linux/kvm.h';
const ASM_HEADER = '/usr/include/x86_64-linux-gnu/asm/kvm.h';
const haveHeader = existsSync(HEADER);
const haveCc = spawnSync('sh', ['-c', 'command -v cc']).status === 0;
const haveBtf = existsSync('/sys/kernel/btf/vmlinux');
if (!haveHeader) console.log(`ioctl-table.test: skipping header checks: ${HEADER} missing (apt-get install linux-libc-dev)`);
if (!haveCc) console.log('ioctl-table.test: skipping the compiler check: no cc');
if (!haveBtf) console.log('ioctl-table.test: skipping BTF size checks: no /sys/kernel/btf/vmlinux');

/** Names of every `#define X ... _IO*(KVMIO ...` (continuations joined) and of defines aliasing one. */
function headerIoctlNames(file: string): string[] {
  const text = readFileSync(file, 'utf8').replace(/\\\n/g, ' ');
  const direct = [...text.matchAll(/^#define\s+(\w+)\s+_IO[RW]*\(\s*KVMIO\b/gm)].map((m) => m[1]);
  const set = new Set(direct);
  const aliases = [...text.matchAll(/^#define\s+(\w+)\s+(\w+)\s*$/gm)].filter((m) => set.has(m[2])).map((m) => m[1]);
  return [...direct, ...aliases];
}

const DIR_NUM = { none: 0, write: 1, read: 2, readwrite: 3 } as const;

describe.skipIf(!haveHeader)('the table covers the header', () => {
  const names = [HEADER, ASM_HEADER].filter(existsSync).flatMap(headerIoctlNames);

  it('finds the header\'s ioctls at all (the re-parse works)', () => {
    expect(names.length).toBeGreaterThan(150);
    expect(names).toContain('KVM_RUN');
    expect(names).toContain('KVM_TRACE_ENABLE'); // defined through __KVM_DEPRECATED_MAIN_W_0x06
  });

  it('has every _IO*(KVMIO, ...) define: with a number, or listed as another architecture\'s', () => {
    const known = new Set([...IOCTLS.map((d) => d.name), ...UNAVAILABLE_IOCTLS.map((u) => u.name)]);
    expect(names.filter((n) => !known.has(n))).toEqual([]);
    expect(known.size).toBe(new Set(names).size);
    console.log(`ioctl-table.test: ${IOCTLS.length} ioctls with x86_64 numbers, ${UNAVAILABLE_IOCTLS.length} other-arch only: ` +
      UNAVAILABLE_IOCTLS.map((u) => u.name).join(', '));
  });

  it.skipIf(!haveCc)('holds the numbers cc computes from the header today (regenerate with npm run gen:ioctls)', () => {
    const dir = mkdtempSync(join(tmpdir(), 'ioctl-test-'));
    try {
      const src = ['#include <stdio.h>', '#include <linux/kvm.h>', 'int main(void) {',
        ...IOCTLS.map((d) => `printf("%s %u\\n", "${d.name}", (unsigned)(${d.name}));`), 'return 0; }'].join('\n');
      writeFileSync(join(dir, 'n.c'), src);
      execFileSync('cc', ['-o', join(dir, 'n'), join(dir, 'n.c')], { stdio: 'pipe' });
      const got = execFileSync(join(dir, 'n'), { encoding: 'utf8' }).trim().split('\n').map((l) => l.split(' '));
      expect(got.map(([n, v]) => [n, Number(v)])).toEqual(IOCTLS.map((d) => [d.name, d.cmd]));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('every entry is consistent with the ioctl encoding', () => {
  it.each(IOCTLS.map((d) => [d.name, d] as const))('%s', (_name, d) => {
    const dec = decodeIoc(d.cmd);
    expect(dec).toEqual({ dir: DIR_NUM[d.dir], type: KVMIO, nr: d.nr, size: d.size });
    expect(ioc(DIR_NUM[d.dir], KVMIO, d.nr, d.size)).toBe(d.cmd);
    expect(d.fdKinds.length).toBeGreaterThan(0);
    expect(d.argType === null).toBe(d.dir === 'none');
    if (d.argStruct) expect(d.argType).toBe(`struct ${d.argStruct}`);
  });
});

describe.skipIf(!haveBtf)('argument sizes equal the running kernel\'s BTF', () => {
  const btf = haveBtf ? Btf.vmlinux() : undefined;
  const withStruct = IOCTLS.filter((d) => d.argStruct);
  const inBtf = withStruct.filter((d) => btf?.struct(d.argStruct!));
  const lacking = [...new Set(withStruct.filter((d) => !btf?.struct(d.argStruct!)).map((d) => d.argStruct))];
  console.log(`ioctl-table.test: ${inBtf.length} ioctls' argument structs are in BTF; ${lacking.length} uapi structs are not ` +
    `(other architectures or config options this kernel lacks): ${lacking.join(' ')}`);

  it('finds most argument structs in BTF (KVM is built into this vmlinux)', () => {
    expect(inBtf.length).toBeGreaterThan(50);
    for (const s of ['kvm_regs', 'kvm_sregs', 'kvm_userspace_memory_region', 'kvm_cpuid2', 'kvm_msrs']) expect(lacking).not.toContain(s);
  });

  it.each(inBtf.map((d) => [d.name, d] as const))('%s', (_name, d) => {
    expect(d.size).toBe(btf!.struct(d.argStruct!)!.size);
  });
});

describe('lookups', () => {
  it.each([
    ['KVM_GET_API_VERSION', 0xae00],
    ['KVM_CREATE_VM', 0xae01],
    ['KVM_RUN', 0xae80],
    ['KVM_GET_VCPU_MMAP_SIZE', 0xae04],
  ])('%s is _IO(KVMIO, ...) = %i', (name, cmd) => {
    expect(ioctlByName(name).cmd).toBe(cmd);
    expect(ioctlByCmd(cmd)?.name).toBe(name);
  });

  it('throws on an unknown name, and explains an other-architecture one', () => {
    expect(() => ioctlByName('KVM_NOPE')).toThrow(/unknown KVM ioctl KVM_NOPE/);
    expect(() => ioctlByName('KVM_ARM_VCPU_INIT')).toThrow(/no x86_64 request number: its argument struct kvm_vcpu_init/);
  });

  it('returns undefined for a number no header name has', () => {
    expect(ioctlByCmd(ioc(1, KVMIO, 0x46, 24))).toBeUndefined();
  });

  it('picks the canonical name where several share a number, and keeps the aliases', () => {
    const trace = ioctlByName('KVM_TRACE_ENABLE');
    expect(ioctlByCmd(trace.cmd)?.name).toBe('KVM_TRACE_ENABLE');
    expect(trace.aliases).toEqual(['__KVM_DEPRECATED_MAIN_W_0x06']);
    const oneReg = ioctlByName('KVM_GET_ONE_REG');
    expect(ioctlsByCmd(oneReg.cmd).map((d) => d.name)).toEqual(['KVM_GET_ONE_REG', 'KVM_ARM_SET_DEVICE_ADDR']);
    expect(ioctlByCmd(oneReg.cmd, 'vm')?.name).toBe('KVM_ARM_SET_DEVICE_ADDR');
    expect(ioctlByCmd(oneReg.cmd, 'vcpu')?.name).toBe('KVM_GET_ONE_REG');
  });

  it('finds candidates by nr and direction whatever their size', () => {
    expect(ioctlByTypeNr(0x46, 'write').map((d) => d.name)).toEqual(['KVM_SET_USER_MEMORY_REGION']);
    expect(ioctlByTypeNr(0x81, 2).map((d) => d.name)).toEqual(['KVM_GET_REGS']);
    expect(ioctlByTypeNr(0xff)).toEqual([]);
  });

  it.each([
    [['KVM_CHECK_EXTENSION'], ['system', 'vm']],
    [['KVM_CREATE_VCPU', 'KVM_SET_USER_MEMORY_REGION', 'KVM_CLEAR_DIRTY_LOG', 'KVM_RESET_DIRTY_RINGS'], ['vm']],
    [['KVM_RUN', 'KVM_GET_REGS', 'KVM_SET_SREGS2', 'KVM_GET_XSAVE2'], ['vcpu']],
    [['KVM_GET_STATS_FD'], ['vm', 'vcpu']],
    [['KVM_SET_DEVICE_ATTR'], ['device', 'vm', 'vcpu']],
  ])('%s valid on %s', (names, kinds) => {
    for (const n of names) expect([n, ioctlByName(n).fdKinds]).toEqual([n, kinds]);
  });

  it.each([
    [0, 'KVM_CAP_IRQCHIP'],
    [3, 'KVM_CAP_USER_MEMORY'],
    [100000, 'KVM_CAP_100000'],
  ])('capName(%i) = %s', (n, name) => {
    expect(capName(n)).toBe(name);
  });

  it('capValue accepts the name with or without the prefix and throws on unknown ones', () => {
    expect(capValue('KVM_CAP_USER_MEMORY')).toBe(capValue('USER_MEMORY'));
    expect(capName(capValue('KVM_CAP_NR_VCPUS'))).toBe('KVM_CAP_NR_VCPUS');
    expect(() => capValue('KVM_CAP_NOPE')).toThrow(/unknown KVM capability/);
  });

  it.each([
    [KVM_EXIT.IO, 'IO'],
    [KVM_EXIT.HLT, 'HLT'],
    [KVM_EXIT.MMIO, 'MMIO'],
    [KVM_EXIT.INTERNAL_ERROR, 'INTERNAL_ERROR'],
    [KVM_EXIT.SHUTDOWN, 'SHUTDOWN'],
    [999, 'UNKNOWN_999'],
  ])('exitReasonName(%i) = %s', (code, name) => {
    expect(exitReasonName(code)).toBe(name);
  });
});
