// The ring-buffer reader against a REAL kernel ring: a BPF_MAP_TYPE_RINGBUF filled by a hand-assembled BPF
// program run with BPF_PROG_TEST_RUN (scripts/lib/ring-producer.ts). Runs as root; skips with a reason otherwise.
import { readdirSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PAGE_SIZE } from '../src/ffi/libc.js';
import { BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP, TestRingProducer, producedDiscarded, producedLen } from '../scripts/lib/ring-producer.js';
import { RawRingReader } from '../src/ringbuf/reader.js';
import { RingBufferConsumer } from '../src/ringbuf/consumer.js';
import { Btf } from '../src/btf/index.js';
import { flattenLayout } from '../src/btf/layout.js';
import { mapCreateAttr, mapElemAttr, progLoadAttr, progTestRunAttr } from '../scripts/lib/bpf-syscall.js';
import type { RecordType } from '../src/cdata/layout.js';

const isRoot = process.getuid?.() === 0;
if (!isRoot) console.log('ringbuf-kernel: skipped — needs root to create BPF maps and programs');

const openFds = (): number => readdirSync('/proc/self/fd').length;

/** Check one drained record against what the producer wrote for `seq`; returns seq. */
function check(view: DataView, off: number, len: number): number {
  const seq = Number(view.getBigUint64(off, true));
  expect(len).toBe(producedLen(seq));
  for (let k = 0; k < len; k++) {
    const want = Number((BigInt(seq) >> BigInt(8 * (k % 8))) & 0xffn);
    if (view.getUint8(off + k) !== want) throw new Error(`seq ${seq}: byte ${k} is ${view.getUint8(off + k)}, want ${want}`);
  }
  return seq;
}

const expectedSeqs = (n: number, discard: boolean): number[] =>
  Array.from({ length: n }, (_, i) => i).filter((s) => !(discard && producedDiscarded(s)));

const waitFor = async (cond: () => boolean, ms: number): Promise<boolean> => {
  const end = Date.now() + ms;
  while (!cond() && Date.now() < end) await new Promise((r) => setTimeout(r, 2));
  return cond();
};

describe.skipIf(!isRoot)('ring buffer on a real kernel ring', () => {
  let fdsBefore = 0;
  beforeAll(() => {
    fdsBefore = openFds();
  });
  afterAll(() => {
    expect(openFds()).toBe(fdsBefore); // no fd leaked by producers, readers or poll handles
  });

  it.each([
    { n: 1, discard: false },
    { n: 40, discard: false },
    { n: 60, discard: true },
  ])('$n records produced (discard=$discard) → all drained in order, byte-exact', ({ n, discard }) => {
    const p = new TestRingProducer(4 * PAGE_SIZE, { discard });
    const r = new RawRingReader(p.ringFd, p.size);
    try {
      p.produce(n);
      expect(p.counters()).toEqual({ seq: n, fails: 0 });
      const seqs: number[] = [];
      const step = r.drain((v, off, len) => seqs.push(check(v, off, len)));
      expect(seqs).toEqual(expectedSeqs(n, discard));
      expect(step.discarded).toBe(n - seqs.length);
      expect(r.availableBytes()).toBe(0);
    } finally {
      r.close();
      p.close();
    }
  });

  it('wraps around many times through a one-page ring, order kept, nothing lost', () => {
    const p = new TestRingProducer(PAGE_SIZE, { discard: true });
    const r = new RawRingReader(p.ringFd, p.size);
    try {
      const seqs: number[] = [];
      // ≈ 40 records × ≈ 32 bytes per batch stays under one page; 300 batches ≈ 90 pages of traffic.
      for (let batch = 0; batch < 300; batch++) {
        p.produce(40);
        r.drain((v, off, len) => seqs.push(check(v, off, len)));
      }
      const { seq, fails } = p.counters();
      expect(fails).toBe(0);
      expect(seq).toBe(12_000);
      expect(r.consumerPos).toBeGreaterThan(50 * PAGE_SIZE);
      expect(seqs).toEqual(expectedSeqs(seq, true));
    } finally {
      r.close();
      p.close();
    }
  });

  it('publishes the consumer position: a full ring refuses records until drained, then accepts again', () => {
    const p = new TestRingProducer(PAGE_SIZE);
    const r = new RawRingReader(p.ringFd, p.size);
    try {
      p.produce(1000); // far more than one page: the ring fills and outputs fail
      const full = p.counters();
      expect(full.fails).toBeGreaterThan(0);
      expect(full.seq).toBeLessThan(1000);
      p.produce(10);
      expect(p.counters().seq).toBe(full.seq); // still full: nothing was consumed

      const first: number[] = [];
      r.drain((v, off, len) => first.push(check(v, off, len)));
      expect(first).toEqual(expectedSeqs(full.seq, false));
      // the kernel-visible consumer page holds our position: a fresh mapping starts there
      const other = new RawRingReader(p.ringFd, p.size);
      expect(other.consumerPos).toBe(r.consumerPos);
      other.close();

      p.produce(20); // space was reused
      const after = p.counters();
      expect(after.seq).toBe(full.seq + 20);
      const second: number[] = [];
      r.drain((v, off, len) => second.push(check(v, off, len)));
      expect(second).toEqual(Array.from({ length: 20 }, (_, i) => full.seq + i));
    } finally {
      r.close();
      p.close();
    }
  });

  it('consumer: a kernel wakeup drains from the event loop (no timer)', async () => {
    const p = new TestRingProducer(4 * PAGE_SIZE, { flags: BPF_RB_FORCE_WAKEUP });
    const seqs: number[] = [];
    const c = new RingBufferConsumer(p.ringFd, p.size, { onRecord: (v, o, l) => seqs.push(check(v, o, l)), intervalMs: 0 });
    try {
      await new Promise((r) => setTimeout(r, 5)); // fd registered with epoll while empty: only a wakeup can wake us
      p.produce(5);
      expect(await waitFor(() => seqs.length === 5, 5000)).toBe(true);
      expect(c.stats.wakeups).toBeGreaterThan(0);
      expect(seqs).toEqual([0, 1, 2, 3, 4]);
    } finally {
      c.close();
      p.close();
    }
  });

  it('consumer: BPF_RB_NO_WAKEUP records are drained by the timer, not by a wakeup', async () => {
    const p = new TestRingProducer(4 * PAGE_SIZE, { flags: BPF_RB_NO_WAKEUP });
    const seqs: number[] = [];
    const polled = new RingBufferConsumer(p.ringFd, p.size, { onRecord: () => {}, intervalMs: 0 });
    polled.close(); // closing before anything was produced: nothing drained, fd watch released
    const c = new RingBufferConsumer(p.ringFd, p.size, { onRecord: (v, o, l) => seqs.push(check(v, o, l)), intervalMs: 10 });
    try {
      await new Promise((r) => setTimeout(r, 5)); // let libuv register the fd with epoll while the ring is empty
      p.produce(30);
      expect(seqs).toEqual([]); // nothing synchronous
      expect(await waitFor(() => seqs.length === 30, 5000)).toBe(true);
      expect(c.stats.wakeups).toBe(0);
      expect(c.stats.drains).toBeGreaterThan(0);
      expect(seqs).toEqual(expectedSeqs(30, false));
    } finally {
      c.close();
      p.close();
    }
  });

  it('consumer: without the timer, BPF_RB_NO_WAKEUP records wait for flush (no wakeup arrives)', async () => {
    const p = new TestRingProducer(4 * PAGE_SIZE, { flags: BPF_RB_NO_WAKEUP });
    const seqs: number[] = [];
    const c = new RingBufferConsumer(p.ringFd, p.size, { onRecord: (v, o, l) => seqs.push(check(v, o, l)), intervalMs: 0 });
    try {
      await new Promise((r) => setTimeout(r, 5));
      p.produce(10);
      await new Promise((r) => setTimeout(r, 50));
      expect(seqs).toEqual([]);
      expect(c.stats.wakeups).toBe(0);
      expect(c.flush()).toBe(10);
      expect(seqs).toEqual(expectedSeqs(10, false));
    } finally {
      c.close();
      p.close();
    }
  });

  it('consumer: flush drains what is left, short records are rejected and counted, close is idempotent', () => {
    const p = new TestRingProducer(4 * PAGE_SIZE, { flags: BPF_RB_NO_WAKEUP, discard: true });
    const seqs: number[] = [];
    const minRecordLen = 24;
    const c = new RingBufferConsumer(p.ringFd, p.size, {
      onRecord: (v, o, l) => seqs.push(check(v, o, l)),
      minRecordLen,
      intervalMs: 0,
      poll: false,
    });
    try {
      p.produce(64);
      expect(c.availableBytes()).toBeGreaterThan(0);
      const read = c.flush();
      const kept = expectedSeqs(64, true);
      const long = kept.filter((s) => producedLen(s) >= minRecordLen);
      expect(seqs).toEqual(long);
      expect(read).toBe(kept.length);
      expect(c.stats).toMatchObject({ records: kept.length, rejected: kept.length - long.length, discarded: 64 - kept.length });
      expect(c.availableBytes()).toBe(0);
      p.produce(3); // seq 64..66: 8..10 bytes, all shorter than minRecordLen
      c.close(); // final flush
      expect(c.stats).toMatchObject({ records: kept.length + 3, rejected: kept.length - long.length + 3 });
      expect(() => c.close()).not.toThrow();
      expect(c.closed).toBe(true);
      expect(c.availableBytes()).toBe(0);
      expect(c.flush()).toBe(0);
    } finally {
      c.close();
      p.close();
    }
  });

  it('consumer: a handler error in a background drain stops it and is reported', async () => {
    const p = new TestRingProducer(4 * PAGE_SIZE, { flags: BPF_RB_NO_WAKEUP });
    const errors: unknown[] = [];
    const c = new RingBufferConsumer(p.ringFd, p.size, {
      onRecord: () => {
        throw new Error('decoder bug');
      },
      intervalMs: 5,
      onError: (e) => errors.push(e),
    });
    try {
      p.produce(3);
      expect(await waitFor(() => errors.length > 0, 5000)).toBe(true);
      expect(String(errors[0])).toContain('decoder bug');
      await new Promise((r) => setTimeout(r, 30));
      expect(errors.length).toBe(1); // stopped after the first failure
    } finally {
      c.close();
      p.close();
    }
  });

  // A functional check of the time budget, not a speed test: ~1 s of handler work waits in the ring; with
  // the budget the loop is given back every few ms, without it (one turn drains all) the gap is the whole second.
  it.each([
    { label: 'the default budget: the event loop answers in between', budget: undefined, n: 20_000 },
    { label: 'no budget (maxMsPerTurn Infinity): one turn holds the loop throughout', budget: Infinity, n: 20_000 },
  ])('consumer: a backlog of $n slow records is drained in order; $label', async ({ budget, n }) => {
    const p = new TestRingProducer(4 << 20, { flags: BPF_RB_NO_WAKEUP });
    const seqs: number[] = [];
    const c = new RingBufferConsumer(p.ringFd, p.size, {
      onRecord: (v, o, l) => {
        seqs.push(check(v, o, l));
        const end = performance.now() + 0.05; // 50 µs of "decoding" per record
        while (performance.now() < end);
      },
      intervalMs: 10,
      maxMsPerTurn: budget,
    });
    let worst = 0;
    let last = performance.now();
    const tick = setInterval(() => {
      const now = performance.now();
      worst = Math.max(worst, now - last);
      last = now;
    }, 1);
    try {
      p.produce(n);
      expect(p.counters()).toEqual({ seq: n, fails: 0 });
      expect(await waitFor(() => seqs.length === n, 30_000)).toBe(true);
      expect(seqs).toEqual(expectedSeqs(n, false));
      if (budget === undefined) {
        expect(c.stats.yields).toBeGreaterThan(0);
        expect(worst).toBeLessThan(250); // one slice is ~5 ms; the bound leaves room for a loaded machine
      } else {
        expect(c.stats.yields).toBe(0);
        expect(worst).toBeGreaterThan(500); // the check above can fail: without a budget one turn held it all
      }
    } finally {
      clearInterval(tick);
      c.close();
      p.close();
    }
  });

  it('rejects a size that is not a power-of-two multiple of the page size', () => {
    expect(() => new RawRingReader(-1, 3 * PAGE_SIZE)).toThrow(RangeError);
  });
});

describe('bpf_attr arms used by the test producer equal the kernel BTF of union bpf_attr', () => {
  const attr = Btf.vmlinux().struct('union bpf_attr');
  it.each([
    ['BPF_MAP_CREATE', mapCreateAttr, ''],
    ['BPF_MAP_*_ELEM', mapElemAttr, ''],
    ['BPF_PROG_LOAD', progLoadAttr, ''],
    ['BPF_PROG_TEST_RUN', progTestRunAttr, 'test'],
  ] as Array<[string, RecordType, string]>)('%s', (_cmd, ours, armName) => {
    expect(attr).toBeDefined();
    // The arm: the member named armName, or the anonymous struct that holds our first member.
    const first = ours.members[0].name;
    const arm = attr!.members.find((m) => m.nested && (armName ? m.name === armName : m.name === '' && flattenLayout(m.nested).some((f) => f.path === first)));
    expect(arm?.nested, `no bpf_attr arm holding ${first}`).toBeDefined();
    const theirs = new Map(flattenLayout(arm!.nested!).map((f) => [f.path, f]));
    for (const m of ours.members) {
      const t = theirs.get(m.name);
      expect(t, `bpf_attr has no ${m.name}`).toBeDefined();
      expect([m.name, m.offset, m.type.size]).toEqual([m.name, t!.offset, t!.size]);
    }
  });
});
