/**
 * kvm_run lines per exit reason, from the running kernel's BTF of struct kvm_run. The offsets in the
 * expectations are this x86_64 kernel's (../shared/HOST.md lists them); the code reads them from BTF.
 */
import { describe, expect, it } from 'vitest';
import { existsSync } from 'node:fs';
import { kernelTypeSource } from '../src/btf/type-source.js';
import { EXIT_UNION_MEMBER, exitUnion, kvmRunBlocks, kvmRunLines } from '../src/analysis/kvm-run-lines.js';
import type { StructLayout } from '../src/btf/layout.js';
import { KVM_EXIT } from '../src/kvm/abi/exit-reasons.generated.js';

const { types, error } = kernelTypeSource();
const run = types?.struct('kvm_run');
if (!run) console.log(`skipping kvm_run line tests: ${error ?? 'no struct kvm_run in BTF'}`);
if (!run && existsSync('/sys/kernel/btf/vmlinux')) throw new Error(`BTF present but struct kvm_run unreadable: ${error}`);

describe.skipIf(!run)('kvm_run lines per exit reason (kernel BTF)', () => {
  const r = run as StructLayout;

  it('struct kvm_run is 2352 bytes with the exit union at 32 (256 bytes)', () => {
    expect(r.size).toBe(2352);
    expect(exitUnion(r)).toMatchObject({ offset: 32 });
    expect(exitUnion(r)!.layout.size).toBe(256);
  });

  it('every uapi exit reason with details names a member that BTF has', () => {
    const members = new Set(exitUnion(r)!.layout.members.map((m) => m.name));
    for (const [reason, member] of Object.entries(EXIT_UNION_MEMBER)) expect(members.has(member), `${reason} → ${member}`).toBe(true);
    // and the header-defined reasons all map to something or are detail-less
    for (const reason of Object.keys(KVM_EXIT)) expect(typeof reason).toBe('string');
  });

  it.each<[string, Record<string, unknown> | undefined, string | null, number[], string[]]>([
    ['HLT', undefined, null, [0], []],
    ['SHUTDOWN', undefined, null, [0], []],
    ['IO', undefined, 'io', [0], []],
    ['IO', { direction: 1, size: 1, port: 0x3f8, count: 1, data_offset: 4096 }, 'io', [0, 64], []],
    ['IO', { direction: 0, size: 4, port: 0x60, count: 20, data_offset: 4096 }, 'io', [0, 64, 65], ['io data']],
    ['MMIO', undefined, 'mmio', [0], []],
    ['HYPERCALL', undefined, 'hypercall', [0, 1], ['hypercall.args']],
    ['INTERNAL_ERROR', { suberror: 1, ndata: 2 }, 'internal', [0], []],
    ['INTERNAL_ERROR', undefined, 'internal', [0, 1, 2], ['internal.data']],
    ['SYSTEM_EVENT', { type: 1, ndata: 1 }, 'system_event', [0], []],
    ['X86_RDMSR', undefined, 'msr', [0], []],
  ])('%s %j → member %s, lines %j, straddling %j', (reason, exit, member, lines, straddling) => {
    const x = kvmRunLines(reason, r, { exit, lineSize: 64 });
    expect(x.member).toBe(member);
    expect(x.lines).toEqual(lines);
    expect(x.straddling.map((f) => f.name)).toEqual(straddling);
  });

  it('header fields come from BTF: exit_reason at 8, apic_base at 24', () => {
    const x = kvmRunLines('HLT', r);
    expect(x.fields.map((f) => [f.name, f.offset, f.size])).toEqual([
      ['exit_reason', 8, 4], ['ready_for_interrupt_injection', 12, 1], ['if_flag', 13, 1], ['flags', 14, 2], ['cr8', 16, 8], ['apic_base', 24, 8],
    ]);
  });

  it('io fields are at 32..47', () => {
    const io = kvmRunLines('IO', r).fields.filter((f) => f.part === 'exit');
    expect(io.map((f) => [f.name, f.offset, f.size])).toEqual([
      ['io.direction', 32, 1], ['io.size', 33, 1], ['io.port', 34, 2], ['io.count', 36, 4], ['io.data_offset', 40, 8],
    ]);
  });

  it('hypercall spans 32..103; its args straddle the line boundary at 64', () => {
    const h = kvmRunLines('HYPERCALL', r).fields.filter((f) => f.part === 'exit');
    expect(h[0].offset).toBe(32);
    const last = h[h.length - 1];
    expect(last.offset + last.size).toBe(104);
    expect(h.find((f) => f.name === 'hypercall.args')).toMatchObject({ offset: 40, size: 48, firstLine: 0, lastLine: 1, straddles: true });
  });

  it('a 128-byte line puts hypercall in one line', () => {
    expect(kvmRunLines('HYPERCALL', r, { lineSize: 128 }).lines).toEqual([0]);
  });

  it('gives the kernel and user address of each touched line', () => {
    const x = kvmRunLines('IO', r, { exit: { size: 1, count: 1, data_offset: 4096 }, kernelAddr: '0xffff888004a3c000', userAddr: '0x7f12345000' });
    expect(x.kernel).toEqual({ base: '0xffff888004a3c000', lines: ['0xffff888004a3c000', '0xffff888004a3d000'] });
    expect(x.user).toEqual({ base: '0x7f12345000', lines: ['0x7f12345000', '0x7f12346000'] });
  });

  it('blocks cover struct kvm_run end to end', () => {
    const b = kvmRunBlocks(r);
    expect(b[0]).toMatchObject({ name: 'request_interrupt_window', offset: 0 });
    expect(b.find((x) => x.name === 'exit union')).toMatchObject({ offset: 32, size: 256 });
    expect(b.find((x) => x.name === 's')).toMatchObject({ offset: 304, size: 2048 });
    const end = b[b.length - 1];
    expect(end.offset + end.size).toBe(r.size);
  });
});
