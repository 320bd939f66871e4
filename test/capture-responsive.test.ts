/**
 * A capture under load keeps answering: while the reference guest runs 4 vCPUs of PIO exits on this 2-core
 * machine and the capture writes every record three ways (JSONL file, live lines, metrics) — more work per
 * record than the guest's threads leave CPU for, so a backlog builds up in a ring big enough to hold it —
 * Prometheus scrapes of the capture's own endpoint are answered throughout. A functional check with a
 * generous bound, not a speed test: the ring consumer gives the event loop back every few ms
 * (src/ringbuf/consumer.ts); when one turn drained up to a million records, scrapes waited for the backlog.
 */
import { createWriteStream, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { JsonlSink } from '../src/decode/jsonl-sink.js';
import { LineSink } from '../src/decode/format.js';
import { capture } from '../src/capture/session.js';
import { stopSignal } from '../src/capture/stop-signal.js';
import { runGuest } from '../src/guest/index.js';
import type { IoctlRecord, TraceRecord } from '../src/decode/records.js';
import { createOtelSink } from '../src/export/otel/index.js';
import { readClockPair } from '../src/export/otel/clock.js';
import { parsePromText, promSum } from './helpers/prom-text.js';
import { bpfSkipReason } from './bpf-support.js';

const skip = bpfSkipReason();
if (skip) console.log(`capture responsiveness test skipped: ${skip}`);
const dir = mkdtempSync(join(tmpdir(), 'kvm-trace-responsive-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const VCPUS = 4;
const EXITS = 60_000;

/** Longer than any scrape should take; short enough that a drain holding the loop for seconds fails. */
const SCRAPE_BOUND_MS = 2000;

describe.skipIf(skip !== undefined)('a heavy capture', () => {
  it('answers every Prometheus scrape within the bound while it decodes 4 vCPUs of exits', async () => {
    const otel = createOtelSink({ clock: readClockPair(), prometheus: { port: 0 }, warn: () => {} });
    const { prometheusUrl } = await otel.start();
    let runs = 0;
    const stop = stopSignal();
    const scrapes: number[] = [];
    let scraping = true;
    const scraper = (async () => {
      while (scraping) {
        const t0 = performance.now();
        const res = await fetch(prometheusUrl!, { signal: AbortSignal.timeout(30_000) });
        await res.text();
        scrapes.push(performance.now() - t0);
        await new Promise((r) => setTimeout(r, 50));
      }
    })();
    try {
      const jsonl = await JsonlSink.open(join(dir, 'capture.jsonl'));
      const summary = (
        await capture({
          pids: [process.pid],
          signal: stop.signal,
          ringBytes: 64 << 20, // room for the backlog: nothing is lost, the consumer only falls behind
          sinks: [
            { write: (r: TraceRecord) => void (r.type === 'ioctl' && (r as IoctlRecord).name === 'KVM_RUN' && runs++), close: async () => {} },
            jsonl,
            new LineSink(createWriteStream('/dev/null')),
            { write: (r) => otel.write(r), close: async () => {} },
          ],
          onAttached: async () => {
            try {
              await runGuest({ scenario: 'pio-out', vcpus: VCPUS, exits: EXITS, probeLongMode: false });
            } finally {
              stop.stop('done');
            }
          },
        })
      ).summary;
      stop.dispose();
      scraping = false;
      await scraper;
      expect(summary.lost).toBe(0);
      expect(runs).toBeGreaterThanOrEqual(VCPUS * EXITS);
      const last = parsePromText(await (await fetch(prometheusUrl!)).text());
      expect(promSum(last, 'kvm_ioctl_calls_total', { kvm_ioctl_name: 'KVM_RUN' })).toBe(runs);
      expect(scrapes.length).toBeGreaterThan(3);
      expect(Math.max(...scrapes), `scrape times (ms): ${scrapes.map((s) => s.toFixed(0)).join(' ')}`).toBeLessThan(SCRAPE_BOUND_MS);
    } finally {
      scraping = false;
      await scraper.catch(() => {});
      await otel.close();
    }
  });
});
