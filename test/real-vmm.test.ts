/**
 * A real VMM's ioctl stream: QEMU (Debian's qemu-system-x86, installed by the test bootstrap) boots its
 * firmware under KVM for a moment while kvm-trace attaches by command name. Every ioctl it makes must
 * decode to a known name, with arguments decoded and each vCPU's kvm_run located (kernel and user).
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { capture } from '../src/capture/session.js';
import { stopSignal } from '../src/capture/stop-signal.js';
import type { IoctlRecord, TraceRecord } from '../src/decode/records.js';
import { bpfSkipReason } from './bpf-support.js';

const QEMU = '/usr/bin/qemu-system-x86_64';
const skip = bpfSkipReason() ?? (existsSync(QEMU) ? undefined : `${QEMU} not installed (node scripts/bootstrap.mjs --test installs it)`);
if (skip) console.log(`real VMM test skipped: ${skip}`);

describe.skipIf(skip !== undefined)('QEMU under kvm-trace', () => {
  it('decodes with 0 unknown ioctl names and locates every kvm_run', async () => {
    const records: TraceRecord[] = [];
    const stop = stopSignal({ durationS: 30 });
    const cap = await capture({
      comm: 'qemu-system-x86', // the kernel's comm is 15 bytes: "qemu-system-x86_64" truncated
      signal: stop.signal,
      sinks: [{ write: (r) => void records.push(r), close: async () => {} }],
      onAttached: async () => {
        const q = spawn(QEMU, ['-enable-kvm', '-m', '64', '-smp', '2', '-display', 'none', '-serial', 'none', '-monitor', 'none', '-no-reboot'], {
          stdio: 'ignore',
        });
        await new Promise((r) => setTimeout(r, 2000));
        q.kill('SIGTERM');
        await new Promise((r) => q.once('exit', r));
        stop.stop('qemu done');
      },
    });
    stop.dispose();
    const ioctls = records.filter((r): r is IoctlRecord => r.type === 'ioctl');
    const names = new Set(ioctls.map((r) => r.name));
    expect(ioctls.length).toBeGreaterThan(100);
    expect(cap.summary.unknown_ioctls).toBe(0);
    expect([...names].filter((n) => n.startsWith('KVM_UNKNOWN'))).toEqual([]);
    expect(names.size).toBeGreaterThanOrEqual(25);
    for (const n of ['KVM_CREATE_VM', 'KVM_CREATE_VCPU', 'KVM_SET_USER_MEMORY_REGION', 'KVM_RUN', 'KVM_CHECK_EXTENSION']) expect(names).toContain(n);
    const region = ioctls.find((r) => r.name === 'KVM_SET_USER_MEMORY_REGION' && r.ret === 0)!;
    expect(region.args).toHaveProperty('memory_size');
    expect(region.args).toHaveProperty('userspace_addr');
    const check = ioctls.find((r) => r.name === 'KVM_CHECK_EXTENSION')!;
    expect(JSON.stringify(check.args)).toMatch(/KVM_CAP_/);
    const runs = records.filter((r) => r.type === 'kvm_run');
    expect(runs.length).toBe(2);
    for (const r of runs) {
      expect(r.type === 'kvm_run' && r.kernel_addr).toMatch(/^0xffff/);
      // A page-aligned user-space address (below the x86-64 canonical hole).
      const user = BigInt(r.type === 'kvm_run' ? (r.user_addr ?? '0') : '0');
      expect(user > 0n && user < 0x800000000000n && user % 4096n === 0n).toBe(true);
    }
    expect(cap.summary.lost).toBe(0);
  });
});
