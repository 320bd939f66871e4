/**
 * What the kernel really requires of KVM ioctl argument buffers, measured on the real /dev/kvm (the
 * evidence docs/ALIGNMENT.md quotes):
 *   - alignment: none — the same struct at +0, +1, +3, +7, across a 64-byte line and across a page is
 *     accepted and read/written byte-exactly;
 *   - size: encoded in the request number — a wrong size is a different number the kernel does not
 *     dispatch (ENOTTY on a VM fd, EINVAL on /dev/kvm and vCPU fds on x86) and the buffer is never touched;
 *   - layout: a same-size struct with members in other places is accepted, and its fields land in the
 *     wrong kernel fields — silently.
 * Offsets of kvm_regs come from the kernel's BTF.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { existsSync } from 'node:fs';
import { kernelTypeSource } from '../src/btf/type-source.js';
import { findMember } from '../src/btf/layout.js';
import { ioc, KVMIO } from '../src/kvm/abi/ioc.js';
import { ioctlByName } from '../src/kvm/abi/ioctl-table.js';

const canKvm = existsSync('/dev/kvm') && process.getuid?.() === 0;
const { types } = kernelTypeSource();
if (!canKvm) console.log('skipping the alignment truth tests: they need root and /dev/kvm');

describe.skipIf(!canKvm || !types)('KVM ioctl buffers on the real kernel', () => {
  let libc: typeof import('../src/ffi/libc.js');
  let errnoName: (n: number) => string;
  let kvm = -1;
  let vm = -1;
  let vcpu = -1;
  let arena = 0n;
  const ARENA = 4 * 4096;
  const regs = types!.struct('kvm_regs')!;
  const off = (m: string) => findMember(regs, m)!.offset;
  const lines: string[] = [];

  beforeAll(async () => {
    libc = await import('../src/ffi/libc.js');
    ({ errnoName } = await import('../src/ffi/errors.js'));
    kvm = libc.open('/dev/kvm', libc.O_RDWR | libc.O_CLOEXEC);
    vm = libc.ioctlRaw(kvm, ioctlByName('KVM_CREATE_VM').cmd, 0);
    vcpu = libc.ioctlRaw(vm, ioctlByName('KVM_CREATE_VCPU').cmd, 0);
    expect(vm).toBeGreaterThanOrEqual(0);
    expect(vcpu).toBeGreaterThanOrEqual(0);
    arena = libc.mmap(0n, ARENA, libc.PROT_READ | libc.PROT_WRITE, libc.MAP_PRIVATE | libc.MAP_ANONYMOUS, -1, 0);
  });
  afterAll(() => {
    if (arena) libc.munmap(arena, ARENA);
    for (const fd of [vcpu, vm, kvm]) if (fd >= 0) libc.close(fd);
    console.log(lines.join('\n'));
  });

  const view = () => new DataView(libc.memoryView(arena, ARENA));
  const call = (fd: number, cmd: number, at: bigint): string => {
    const r = libc.ioctlRaw(fd, cmd, at);
    return r < 0 ? errnoName(-r) : 'ok';
  };

  it.each([
    ['aligned', 0x40],
    ['+1', 0x41],
    ['+3', 0x43],
    ['+7', 0x47],
    ['across a 64-byte line (56 into it)', 0x78],
    ['across a page (8 before its end)', 4096 - 8],
  ])('KVM_SET_REGS / KVM_GET_REGS with the buffer %s: accepted, data intact', (label, o) => {
    const at = arena + BigInt(o);
    const dv = view();
    new Uint8Array(dv.buffer).fill(0);
    dv.setBigUint64(o + off('rbx'), 0x1122334455667788n, true);
    dv.setBigUint64(o + off('rip'), 0x1000n, true);
    dv.setBigUint64(o + off('rflags'), 0x2n, true);
    expect(call(vcpu, ioctlByName('KVM_SET_REGS').cmd, at)).toBe('ok');
    const back = o + 1024;
    expect(call(vcpu, ioctlByName('KVM_GET_REGS').cmd, arena + BigInt(back))).toBe('ok');
    expect(view().getBigUint64(back + off('rbx'), true)).toBe(0x1122334455667788n);
    expect(view().getBigUint64(back + off('rip'), true)).toBe(0x1000n);
    // and the misaligned GET writes the same bytes
    expect(call(vcpu, ioctlByName('KVM_GET_REGS').cmd, at)).toBe('ok');
    expect(view().getBigUint64(o + off('rbx'), true)).toBe(0x1122334455667788n);
    lines.push(`alignment: KVM_SET_REGS+KVM_GET_REGS at arena+0x${o.toString(16)} (${label}, addr % 8 = ${Number(at % 8n)}, addr % 64 = ${Number(at % 64n)}): ok, rbx round-trips`);
  });

  it.each<[string, 'system' | 'vm' | 'vcpu', number, number, number, string]>([
    ['KVM_GET_REGS', 'vcpu', 2, 0x81, regs.size - 8, 'EINVAL'],
    ['KVM_GET_REGS', 'vcpu', 2, 0x81, regs.size + 8, 'EINVAL'],
    ['KVM_SET_REGS', 'vcpu', 1, 0x82, regs.size - 8, 'EINVAL'],
    ['KVM_SET_USER_MEMORY_REGION', 'vm', 1, 0x46, 24, 'ENOTTY'],
    ['KVM_SET_USER_MEMORY_REGION', 'vm', 1, 0x46, 40, 'ENOTTY'],
    ['KVM_GET_MSR_INDEX_LIST', 'system', 3, 0x02, 8, 'EINVAL'],
  ])('%s on a %s fd with a wrong encoded size → its number is unknown: %s, buffer untouched', (name, kind, dir, nr, size, errno) => {
    const right = ioctlByName(name);
    const cmd = ioc(dir, KVMIO, nr, size);
    expect(cmd).not.toBe(right.cmd);
    const fd = kind === 'vcpu' ? vcpu : kind === 'vm' ? vm : kvm;
    const u8 = new Uint8Array(view().buffer, 0, 1024);
    u8.fill(0xa5);
    expect(call(fd, cmd, arena)).toBe(errno);
    expect(u8.every((b) => b === 0xa5)).toBe(true);
    lines.push(`size: ${name} encoded with ${size} bytes (kernel's is ${right.size}) on the ${kind} fd: 0x${cmd.toString(16)} → ${errno}; the 1024 bytes at the argument are unchanged`);
  });

  it('a buffer running into an unmapped page: EFAULT; a read-direction copy has written the mapped part', () => {
    // Two pages, the second unmapped: kvm_regs starts 64 bytes before the hole.
    const two = libc.mmap(0n, 8192, libc.PROT_READ | libc.PROT_WRITE, libc.MAP_PRIVATE | libc.MAP_ANONYMOUS, -1, 0);
    libc.munmap(two + 4096n, 4096);
    try {
      const at = two + 4096n - 64n;
      const head = new Uint8Array(libc.memoryView(two + 4096n - 64n, 64));
      head.fill(0xa5);
      const set = call(vcpu, ioctlByName('KVM_SET_REGS').cmd, at);
      expect(set).toBe('EFAULT');
      const get = call(vcpu, ioctlByName('KVM_GET_REGS').cmd, at);
      expect(get).toBe('EFAULT');
      const written = head.filter((b) => b !== 0xa5).length;
      expect(written).toBeGreaterThan(0);
      lines.push(`fault: kvm_regs placed 64 bytes before an unmapped page: KVM_SET_REGS → ${set}; KVM_GET_REGS → ${get} after writing ${written} of the 64 mapped bytes`);
    } finally {
      libc.munmap(two, 4096);
    }
  });

  it('a same-size struct with two members swapped is accepted and corrupts both fields', () => {
    // A caller whose kvm_regs declares rflags before rip (same size, same request number).
    const dv = view();
    new Uint8Array(dv.buffer).fill(0);
    dv.setBigUint64(off('rip'), 0x2n, true); // meant as rflags
    dv.setBigUint64(off('rflags'), 0x7c00n, true); // meant as rip
    expect(call(vcpu, ioctlByName('KVM_SET_REGS').cmd, arena)).toBe('ok');
    expect(call(vcpu, ioctlByName('KVM_GET_REGS').cmd, arena + 2048n)).toBe('ok');
    const rip = view().getBigUint64(2048 + off('rip'), true);
    const rflags = view().getBigUint64(2048 + off('rflags'), true);
    expect(rip).toBe(0x2n);
    expect(rflags).not.toBe(0x2n);
    lines.push(`layout: KVM_SET_REGS with rip/rflags swapped in the caller's struct: ok (no errno); KVM_GET_REGS then reads rip=0x${rip.toString(16)} (the caller meant 0x7c00), rflags=0x${rflags.toString(16)} (meant 0x2)`);
  });
});
