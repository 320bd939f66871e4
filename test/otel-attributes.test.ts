/**
 * The README's one attribute table is what kvm-trace emits, both ways: every attribute a real export carries
 * (resource, span, span event, metric data point) is in the table with that place, and every row of the table
 * is emitted somewhere. The exports: synthetic captures shaped to reach every code path (aggregate and sample
 * run spans, a VM seen late, a call seen without its entry), and — where BPF works — a real `kvm-trace demo`.
 * The metrics table above it likewise: every instrument exported is a row (name, kind, Prometheus series)
 * and every row is exported.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TraceRecord } from '../src/decode/records.js';
import { MonotonicToEpoch } from '../src/export/otel/clock.js';
import type { OtelSinkOptions } from '../src/export/otel/options.js';
import { exportRecords } from '../src/export/otel/sink.js';
import { bpfSkipReason } from './bpf-support.js';
import { startOtlpReceiver, type OtlpReceiver } from './helpers/otlp-receiver.js';
import { syntheticCapture } from './helpers/otel-records.js';

type Place = 'resource' | 'span' | 'event' | 'metric';
const root = join(import.meta.dirname, '..');
const cli = join(root, 'dist', 'src', 'cli', 'main.js');
const skip = bpfSkipReason();
if (skip) console.log(`attribute table: the real demo export is skipped (${skip}); synthetic exports still run`);

interface Row {
  name: string;
  /** For `kvm.exit.<detail>`-style rows. */
  pattern?: RegExp;
  places: Set<Place>;
}

/** The rows of the README's attribute table (section "### Attributes"). */
function readmeTable(): Row[] {
  const readme = readFileSync(join(root, 'README.md'), 'utf8');
  const section = readme.slice(readme.indexOf('### Attributes'));
  const table = section.slice(0, section.indexOf('\n###'));
  const rows: Row[] = [];
  for (const line of table.split('\n')) {
    const cells = line.split('|').map((c) => c.trim());
    if (cells.length < 4 || !cells[1].startsWith('`')) continue;
    const places = new Set(
      cells[2].split(',').map((p) => {
        const w = p.trim();
        if (w === 'span event') return 'event';
        if (w === 'resource' || w === 'span' || w === 'metric') return w;
        throw new Error(`README attribute table: unknown place "${w}" in: ${line}`);
      }),
    );
    for (const m of cells[1].matchAll(/`([^`]+)`/g)) {
      const name = m[1];
      const pattern = name.includes('<') ? new RegExp(`^${name.replace(/\./g, '\\.').replace(/<[^>]+>/g, '.+')}$`) : undefined;
      rows.push({ name, pattern, places });
    }
  }
  return rows;
}

interface InstrumentRow {
  name: string;
  kind: string;
  prometheus: string;
}

/** The rows of the README's metrics table (the one whose first column is "instrument"). */
function instrumentTable(): InstrumentRow[] {
  const readme = readFileSync(join(root, 'README.md'), 'utf8');
  const head = readme.indexOf('| instrument | kind | Prometheus series |');
  expect(head, 'the README has a metrics table').toBeGreaterThan(0);
  const rows: InstrumentRow[] = [];
  for (const line of readme.slice(head).split('\n').slice(2)) {
    if (!line.startsWith('|')) break;
    const cells = line.split('|').map((c) => c.trim());
    rows.push({ name: cells[1].replace(/`/g, ''), kind: cells[2], prometheus: cells[3].replace(/`/g, '') });
  }
  return rows;
}

/** The Prometheus series of an OTLP instrument as the README writes them (no unit suffix: the names carry theirs). */
function promSeriesOf(name: string, kind: 'sum' | 'histogram'): string {
  const base = name.replace(/\./g, '_');
  return kind === 'sum' ? `${base}_total` : `${base}_{bucket,sum,count}`;
}

/** Every (attribute, place) an OTLP receiver got. */
function emitted(rx: OtlpReceiver): Map<string, Set<Place>> {
  const out = new Map<string, Set<Place>>();
  const add = (keys: Iterable<string>, place: Place) => {
    for (const k of keys) out.set(k, (out.get(k) ?? new Set()).add(place));
  };
  for (const s of rx.spans) {
    add(Object.keys(s.attributes), 'span');
    add(Object.keys(s.resource), 'resource');
    for (const e of s.events) add(Object.keys(e.attributes), 'event');
  }
  for (const m of rx.metrics) {
    add(Object.keys(m.resource), 'resource');
    for (const p of m.points) add(Object.keys(p.attributes), 'metric');
  }
  return out;
}

function merge(a: Map<string, Set<Place>>, b: Map<string, Set<Place>>): Map<string, Set<Place>> {
  const out = new Map(a);
  for (const [k, v] of b) out.set(k, new Set([...(out.get(k) ?? []), ...v]));
  return out;
}

/** The rows that describe `key`: its explicit row(s), else the pattern rows it matches. */
function rowsFor(rows: Row[], key: string): Row[] {
  const explicit = rows.filter((r) => !r.pattern && r.name === key);
  return explicit.length ? explicit : rows.filter((r) => r.pattern?.test(key));
}

describe('the README attribute table', () => {
  const rows = readmeTable();
  let synthetic: Map<string, Set<Place>>;
  let real: Map<string, Set<Place>> | undefined;
  /** Instrument name -> kind, of the synthetic exports. */
  const instruments = new Map<string, string>();
  const dir = mkdtempSync(join(tmpdir(), 'kvm-trace-attrs-'));

  beforeAll(async () => {
    const rx = await startOtlpReceiver();
    try {
      const startNs = MonotonicToEpoch.nowNs() - 100_000_000;
      const cap = syntheticCapture({ startNs, vcpus: 2, runsPerVcpu: 300 });
      const opts: OtelSinkOptions = { endpoint: rx.url, warn: () => {} };
      await exportRecords(cap.records, opts);
      await exportRecords(cap.records, { ...opts, runSpans: { mode: 'sample', sampleEvery: 50 } });
      // Attached late: the VM and vCPU are first seen at a vCPU ioctl, whose entry was not seen either.
      const from = cap.records.findIndex((r) => r.type === 'ioctl' && r.name === 'KVM_SET_REGS');
      const late = cap.records.slice(from).map((r, i): TraceRecord => (i === 0 && r.type === 'ioctl' ? { ...r, enter_ns: 0, latency_ns: 0, no_enter: true } : r));
      await exportRecords(late, opts);
      synthetic = emitted(rx);
      for (const m of rx.metrics) instruments.set(m.name, m.kind);
    } finally {
      await rx.close();
    }
    if (skip) return;
    const rx2 = await startOtlpReceiver();
    try {
      // Not spawnSync: the receiver runs on this process's event loop.
      const child = spawn(process.execPath, [cli, 'demo', '--json', '--exits', '200', '--out', dir, '--otlp', rx2.url], { stdio: ['ignore', 'ignore', 'pipe'] });
      let stderr = '';
      child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
      expect(code, stderr).toBe(0);
      real = emitted(rx2);
      expect(real.size).toBeGreaterThan(30);
    } finally {
      await rx2.close();
    }
  }, 120_000);
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('has rows, each in known places', () => {
    expect(rows.length).toBeGreaterThan(40);
    expect(rows.filter((r) => r.pattern).map((r) => r.name).sort()).toEqual(['kvm.exit.<detail>', 'kvm.run.errnos.<ERRNO>', 'kvm.run.exits.<REASON>']);
  });

  it('every attribute emitted — synthetic and, where BPF works, a real demo — is in the table with its place', () => {
    for (const [source, attrs] of [['synthetic', synthetic], ['real demo', real]] as const) {
      if (!attrs) continue;
      for (const [key, places] of attrs) {
        const described = rowsFor(rows, key);
        expect(described.length, `${source}: ${key} is emitted but not in the README table`).toBeGreaterThan(0);
        const allowed = new Set(described.flatMap((r) => [...r.places]));
        for (const p of places) expect(allowed.has(p), `${source}: ${key} is emitted on ${p}, the table says ${[...allowed]}`).toBe(true);
      }
    }
  });

  it('every row of the table is emitted, in every place it names', () => {
    const all = real ? merge(synthetic, real) : synthetic;
    for (const row of rows) {
      const keys = row.pattern ? [...all.keys()].filter((k) => rowsFor(rows, k).includes(row)) : all.has(row.name) ? [row.name] : [];
      expect(keys.length, `${row.name} is in the table but never emitted`).toBeGreaterThan(0);
      const places = new Set(keys.flatMap((k) => [...all.get(k)!]));
      for (const p of row.places) expect(places.has(p), `${row.name}: the table says ${p}, never emitted there`).toBe(true);
    }
  });

  it('the metrics table lists exactly the instruments exported, with their kind and Prometheus series', () => {
    const table = instrumentTable();
    expect(table.map((r) => r.name).sort()).toEqual([...instruments.keys()].sort());
    for (const r of table) {
      const kind = instruments.get(r.name) as 'sum' | 'histogram';
      expect(r.kind.startsWith(kind === 'sum' ? 'counter' : 'histogram'), `${r.name}: ${r.kind} vs ${kind}`).toBe(true);
      expect(r.prometheus, r.name).toBe(promSeriesOf(r.name, kind));
    }
  });

  it('names: standard ones where a convention exists, kvm.* for the rest', () => {
    const standard = /^(service|host|telemetry\.sdk|process|thread|error)\./;
    for (const row of rows) expect(standard.test(row.name) || row.name.startsWith('kvm.'), row.name).toBe(true);
  });
});
