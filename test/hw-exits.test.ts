/**
 * Hardware exits (attach / top --hw-exits): reason names parsed from the running kernel's kvm_exit format,
 * the verdict taken by observation, and — on this machine kind, whose PVM backend never emits kvm:kvm_exit —
 * the statement said once with every hardware-exit field left out, in a full capture, an aggregate capture and
 * top. Where the events fire (Debian's 6.12 with kvm-amd) the kernel matrix checks the counts and names
 * (scripts/kernels/hw-check.ts, test/kernels.test.ts).
 */
import { existsSync, readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { hwExitVerdict, type HwAttach } from '../src/bpf/hw-exits.js';
import { hwReasonName, KVM_ISA_SVM, KVM_ISA_VMX, parseKvmExitFormat } from '../src/bpf/hw-reasons.js';
import { tracefsDir } from '../src/bpf/tracefs.js';
import { capture } from '../src/capture/session.js';
import { stopSignal } from '../src/capture/stop-signal.js';
import { AggregateSource } from '../src/top/aggregate-source.js';
import type { IoctlRecord } from '../src/decode/records.js';
import { bpfSkipReason, runPioGuest } from './bpf-support.js';
import { CollectSink } from './helpers/collect-sink.js';

const skip = bpfSkipReason();
if (skip) console.log(`hardware-exit capture tests skipped: ${skip}`);

/** The print fmt shape of kvm_exit (arch/x86/kvm/trace.h), cut down to a few entries per table. */
const FORMAT = `name: kvm_exit
format:
	field:unsigned int exit_reason;	offset:8;	size:4;	signed:0;

print fmt: "vcpu %u reason %s%s%s rip 0x%lx", REC->vcpu_id, (REC->isa == 1) ? __print_symbolic(REC->exit_reason & 0xffff, { 0, "EXCEPTION_NMI" }, { 30, "IO_INSTRUCTION" }, { 33, "INVALID_STATE" }, { 48, "EPT_VIOLATION" }) : __print_symbolic(REC->exit_reason, { 0x040 + 14, "PF excp" }, { 0x07b, "io" }, { 0x400, "npf" }, { -1, "invalid_guest_state" }), (REC->isa == 1 && REC->exit_reason & ~0xffff) ? " " : "", (REC->isa == 1) ? __print_flags(REC->exit_reason & ~0xffff, " ", { 0x80000000, "FAILED_VMENTRY" }) : "", REC->guest_rip
`;

describe('hardware exit reason names from the kvm_exit format', () => {
  const names = parseKvmExitFormat(FORMAT);
  it.each([
    [KVM_ISA_VMX, 30, 'IO_INSTRUCTION'],
    [KVM_ISA_VMX, 48, 'EPT_VIOLATION'],
    [KVM_ISA_VMX, 0x80000021, 'INVALID_STATE|0x80000000'], // a failed VM entry keeps its flag visible
    [KVM_ISA_VMX, 99, '99'], // not in the table: the number
    [KVM_ISA_SVM, 0x4e, 'PF excp'], // "0x040 + 14"
    [KVM_ISA_SVM, 0x7b, 'io'],
    [KVM_ISA_SVM, 0x400, 'npf'],
    [KVM_ISA_SVM, 0xffffffff, 'invalid_guest_state'], // "-1" as the u32 it is
    [KVM_ISA_SVM, 0x1234, '0x1234'],
  ])('isa %d reason %d → %s', (isa, reason, name) => {
    expect(hwReasonName(names, isa, reason)).toBe(name);
  });

  it('a format without the table gives numbers and says why', () => {
    const n = parseKvmExitFormat('name: kvm_exit\nprint fmt: "vcpu %u", REC->vcpu_id\n');
    expect(n.byIsa.size).toBe(0);
    expect(n.source).toMatch(/numbers/);
    expect(hwReasonName(n, KVM_ISA_SVM, 0x7b)).toBe('0x7b');
  });

  const live = tracefsDir() && `${tracefsDir()}/events/kvm/kvm_exit/format`;
  it.skipIf(!live || !existsSync(live))('this kernel’s own format: both tables, the VMX one masked', () => {
    const n = parseKvmExitFormat(readFileSync(live!, 'utf8'));
    expect(n.byIsa.get(KVM_ISA_VMX)?.mask).toBe(0xffff);
    expect(hwReasonName(n, KVM_ISA_VMX, 30)).toBe('IO_INSTRUCTION');
    expect(hwReasonName(n, KVM_ISA_SVM, 0x7b)).toBe('io');
    expect(hwReasonName(n, KVM_ISA_SVM, 0x400)).toBe('npf');
  });
});

describe('the verdict is taken by observation', () => {
  const on: HwAttach = { requested: true, attached: true, reason: 'attached' };
  it.each([
    ['not asked for', { requested: false, attached: false, reason: 'not requested' }, 10, 0, undefined],
    ['no KVM_RUN yet: nothing to say', on, 0, 0, undefined],
    ['KVM_RUNs and no kvm_exit: does not fire', on, 10, 0, false],
    ['kvm_exit seen', on, 10, 12, true],
    ['could not attach', { requested: true, attached: false, reason: 'kvm:kvm_exit is not a tracepoint of this kernel' }, 10, 0, false],
  ] as const)('%s', (_what, h, runs, exits, available) => {
    const v = hwExitVerdict(h, runs, exits);
    expect(v?.available).toBe(available);
    if (available === false && h.attached) expect(v!.statement).toMatch(/^kvm:kvm_exit does not fire on this kernel \(10 KVM_RUN calls, 0 hardware exits/);
  });
});

describe.skipIf(skip !== undefined)('--hw-exits on this kernel', () => {
  it('full and aggregate capture: attached, and where kvm:kvm_exit does not fire said once, no field, no zero', async () => {
    const kinds = [false, true];
    for (const aggregate of kinds) {
      const stop = stopSignal();
      const sink = new CollectSink();
      const logs: string[] = [];
      const cap = await capture({
        pids: [process.pid],
        aggregate,
        hwExits: true,
        signal: stop.signal,
        sinks: [sink],
        log: (l) => logs.push(l),
        onAttached: () => {
          try {
            runPioGuest();
          } finally {
            stop.stop('done');
          }
        },
      });
      stop.dispose();
      const s = cap.summary;
      expect(logs.some((l) => l.startsWith('hardware exits: kvm:kvm_entry and kvm:kvm_exit attached')), logs.join('\n')).toBe(true);
      expect(s.hw_exits).toBeDefined();
      const runs = sink.records.filter((r): r is IoctlRecord => r.type === 'ioctl' && r.name === 'KVM_RUN');
      if (s.hw_exits!.available) {
        // A kernel that emits them (a distribution kernel with kvm-intel / kvm-amd): real numbers.
        expect(s.hw_exit_stats!.length).toBeGreaterThan(0);
        if (!aggregate) for (const r of runs) expect(r.hw_exits).toBeGreaterThan(0);
        continue;
      }
      expect(s.hw_exits!.statement).toMatch(/^kvm:kvm_exit does not fire on this kernel \(\d+ KVM_RUN calls, 0 hardware exits/);
      expect(s).not.toHaveProperty('hw_exit_stats');
      expect(s).not.toHaveProperty('run_split');
      // Said once: in the summary, not also in the log.
      expect(logs.filter((l) => /does not fire/.test(l))).toEqual([]);
      if (!aggregate) {
        expect(runs.length).toBe(2);
        for (const r of runs) for (const f of ['hw_exits', 'guest_ns', 'kvm_ns']) expect(r).not.toHaveProperty(f);
      }
    }
  });

  it('top: the statement is a note, and no row has a hardware-exit count', () => {
    const src = AggregateSource.open({ pids: [process.pid], hwExits: true });
    try {
      runPioGuest();
      const snap = src.snapshot();
      const notes = snap.notes.filter((n) => /kvm:kvm_exit/.test(n));
      if (notes.length === 0) {
        expect(snap.entities.some((e) => (e.hw_exits ?? 0) > 0)).toBe(true); // a kernel that emits them
        return;
      }
      expect(notes).toHaveLength(1);
      expect(notes[0]).toMatch(/does not fire/);
      for (const e of snap.entities) expect(e).not.toHaveProperty('hw_exits');
      expect(snap.entities.find((e) => e.pid === process.pid && e.vcpu === 0)?.exits).toEqual({ IO: 1, HLT: 1 });
    } finally {
      src.close();
    }
  });
});
