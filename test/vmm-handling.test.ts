/**
 * VMM handling time against the reference guest's own clock (issue 11's acceptance). The guest reads
 * CLOCK_MONOTONIC (process.hrtime) right before and right after every ioctl (t0_ns, t1_ns); the tracer
 * stamps the same clock (bpf_ktime_get_ns) at sys_exit of a KVM_RUN and at sys_enter of the next. So for
 * re-entry i of a vCPU, with the guest's calls i and i+1:
 *
 *   t0[i] ≤ exit_ns ≤ t1[i]   and   t0[i+1] ≤ reenter_ns ≤ t1[i+1]
 *
 * i.e. each timed re-entry is matched to exactly one of the guest's, and the measured handling time is the
 * guest's (t0[i+1] − t1[i]) plus the return leg of call i (sys_exit tracepoint → back in JS → clock read)
 * and the entry leg of call i+1 (clock read → koffi → sys_enter tracepoint). That excess is the tolerance:
 * never negative, and as small as two syscall legs — a few µs — unless the thread was preempted inside a
 * leg (this machine has 2 CPUs shared by every vCPU thread and whatever else runs). So every re-entry must
 * match with 0 ≤ excess, the median excess must be ≤ LEG_MEDIAN_NS, and an excess above LEG_MAX_NS is
 * allowed only as often as the process was involuntarily descheduled during the run (getrusage; one run
 * here: 24 012 re-entries, excess median 0.71 µs, p99 1.4 µs, 5 above 200 µs against 667 preemptions).
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { capture } from '../src/capture/session.js';
import { stopSignal } from '../src/capture/stop-signal.js';
import { runGuest, type GtRecord } from '../src/guest/index.js';
import { VmmHandlingTracker, type HandlingSample } from '../src/analysis/vmm-handling.js';
import { bpfSkipReason } from './bpf-support.js';
import { CollectSink } from './helpers/collect-sink.js';

const skip = bpfSkipReason();
if (skip) console.log(`VMM handling ground-truth test skipped: ${skip}`);
const dir = mkdtempSync(join(tmpdir(), 'kvm-trace-handling-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Two syscall legs, typical (measured here: median ≈ 0.7 µs, p99 ≈ 1.4 µs): the median excess must stay below. */
const LEG_MEDIAN_NS = 5_000;
/** Two syscall legs, unpreempted, on a slow day: more than this needs a context switch to explain it. */
const LEG_MAX_NS = 100_000;


interface GtRun {
  t0: number;
  t1: number;
}

describe.skipIf(skip !== undefined)('VMM handling time vs the reference guest', () => {
  it('every re-entry of every vCPU matches the guest’s own timestamps', async () => {
    const sink = new CollectSink();
    const stop = stopSignal();
    const log = join(dir, 'gt.jsonl');
    let guest: Awaited<ReturnType<typeof runGuest>> | undefined;
    let ivcsw = 0;
    const cap = await capture({
      pids: [process.pid],
      signal: stop.signal,
      sinks: [sink],
      onAttached: async () => {
        const before = process.resourceUsage().involuntaryContextSwitches;
        try {
          guest = await runGuest({ scenario: 'all', vcpus: 2, exits: 2000, log, probeLongMode: false });
        } finally {
          ivcsw = process.resourceUsage().involuntaryContextSwitches - before;
          stop.stop('guest done');
        }
      },
    });
    stop.dispose();
    expect(cap.summary.lost).toBe(0);
    const truth = readFileSync(log, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as GtRecord);

    // The guest's KVM_RUN calls per vCPU thread, in order.
    const gt = new Map<string, GtRun[]>();
    for (const r of truth) {
      if (r.type !== 'ioctl' || r.name !== 'KVM_RUN') continue;
      const k = `${r.tid}/${r.fd}`;
      if (!gt.has(k)) gt.set(k, []);
      gt.get(k)!.push({ t0: r.t0_ns, t1: r.t1_ns });
    }
    expect(gt.size).toBe(2);

    // The same records the capture summarised, through the same tracker, with every sample kept.
    const samples: HandlingSample[] = [];
    const tracker = new VmmHandlingTracker({ onSample: (s) => samples.push(s) });
    for (const r of sink.records) if (r.type !== 'ioctl' || r.pid === process.pid) tracker.write(r);
    expect(tracker.summary()).toEqual(cap.summary.vmm_handling);

    const excess: number[] = [];
    for (const [k, runs] of gt) {
      const [tid, fd] = k.split('/').map(Number);
      // Re-entries: consecutive calls on the same thread and fd (the guest runs one vCPU per thread).
      const mine = samples.filter((s) => s.tid === tid && s.fd === fd);
      expect(mine.length, `vCPU thread ${tid}`).toBe(runs.length - 1);
      mine.forEach((s, i) => {
        const a = runs[i];
        const b = runs[i + 1];
        const where = `thread ${tid} re-entry ${i}`;
        expect(s.exit_ns, where).toBeGreaterThanOrEqual(a.t0);
        expect(s.exit_ns, where).toBeLessThanOrEqual(a.t1);
        expect(s.reenter_ns, where).toBeGreaterThanOrEqual(b.t0);
        expect(s.reenter_ns, where).toBeLessThanOrEqual(b.t1);
        const truthNs = b.t0 - a.t1;
        expect(s.ns, where).toBeGreaterThanOrEqual(truthNs);
        excess.push(s.ns - truthNs);
      });
    }
    excess.sort((a, b) => a - b);
    const q = (p: number): number => excess[Math.ceil(p * excess.length) - 1];
    const over = excess.filter((e) => e > LEG_MAX_NS).length;
    console.log(
      `VMM handling vs guest clock: ${excess.length} re-entries matched; excess p50 ${q(0.5)} ns, p90 ${q(0.9)} ns, p99 ${q(0.99)} ns, max ${excess.at(-1)} ns; ` +
        `${over} above ${LEG_MAX_NS} ns, ${ivcsw} involuntary context switches`,
    );
    expect(q(0.5)).toBeLessThanOrEqual(LEG_MEDIAN_NS);
    expect(over).toBeLessThanOrEqual(ivcsw);

    // The summary's view per vCPU: one re-entry fewer than its KVM_RUN calls (the last HLT stays pending),
    // the keys the programs exit with, and the guest's exit counts behind them.
    const h = cap.summary.vmm_handling!;
    const ours = h.vcpus.filter((v) => v.pid === process.pid);
    expect(ours.map((v) => v.vcpu).sort()).toEqual([0, 1]);
    for (const v of ours) {
      const g = guest!.per_vcpu.find((p) => p.vcpu === v.vcpu)!;
      const runs = gt.get(`${g.tid}/${g.fd}`)!.length;
      expect(v.total.count + v.pending).toBe(runs);
      expect(v.pending).toBe(1);
      const keys = Object.fromEntries(v.by_exit.map((e) => [e.key, e.count]));
      expect(keys['IO out 0x10']).toBeGreaterThanOrEqual(2000);
      expect(keys['IO in 0x11']).toBeGreaterThanOrEqual(2000);
      expect(keys['MMIO write 0xd0000-0xd0fff']).toBeGreaterThanOrEqual(2000);
      expect(keys['MMIO read 0xd0000-0xd0fff']).toBeGreaterThanOrEqual(2000);
      const io = v.by_exit.filter((e) => e.reason === 'IO').reduce((n, e) => n + e.count, 0);
      expect(io).toBe(g.exits.IO);
    }
    // The exit table counts every KVM_RUN the guest made, by the reason it returned with.
    const table = Object.fromEntries(cap.summary.exit_stats!.map((r) => [r.reason, r.samples]));
    expect(table.IO).toBe(guest!.exits.IO);
    expect(table.MMIO).toBe(guest!.exits.MMIO);
    expect(table.HLT).toBe(guest!.exits.HLT);
  });
});
