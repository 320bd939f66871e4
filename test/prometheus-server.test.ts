/**
 * The Grafana dashboard proven on a real Prometheus (Debian's `prometheus`, started here with its own
 * storage and port, scraping every second): `kvm-trace attach --prometheus 0` captures the reference guest
 * (`kvm-trace guest`) and a VMM that makes ABI mistakes (failing ioctls: the reference guest issues none), and
 * every PromQL query of every dashboard — panels and template variables — is evaluated through Prometheus's
 * HTTP API. Each must return series, and their values must equal what the capture recorded.
 *
 * How values can be exact: a warm-up run creates every ioctl/flag series first, so the measured run's
 * increments are all seen by rate()/increase(); the window runs from a scrape taken after the warm-up settled
 * to a scrape taken after the measured run settled (samples exactly on both ends: no extrapolation); the
 * truth for that window is the capture's own JSONL (records of the measured processes), and the totals are
 * the capture's summary. Only series that are new in the measured run (exits carry the process id) lose
 * what happened before their first scrape, as Prometheus always does: for those the counter itself must
 * equal the truth, and the panel's value must lie between its growth from the first scrape on and the truth.
 *
 * Tempo (TraceQL) panels cannot be evaluated by Prometheus; test/dashboards.test.ts checks their names
 * against a real span export.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { IoctlRecord, SummaryRecord, TraceRecord } from '../src/decode/records.js';
import { DURATION_BUCKETS_S } from '../src/export/otel/record-metrics.js';
import { exitReasonOf } from '../src/analysis/exit-key.js';
import { VmmHandlingTracker } from '../src/analysis/vmm-handling.js';
import { bpfSkipReason } from './bpf-support.js';
import { startOtlpReceiver, type OtlpReceiver } from './helpers/otlp-receiver.js';
import { freePort } from './helpers/ports.js';

const root = join(import.meta.dirname, '..');
const cli = join(root, 'dist', 'src', 'cli', 'main.js');
const DASHBOARD_DIR = join(root, 'dashboards');
const PROMETHEUS = '/usr/bin/prometheus';
const SCRAPE_S = 1;
/** The command name every traced process runs under (a symlink to node), so other KVM users are not traced. */
const COMM = 'kt-promtest';

function skipReason(): string | undefined {
  const bpf = bpfSkipReason();
  if (bpf) return bpf;
  if (spawnSync(PROMETHEUS, ['--version']).status !== 0) return `${PROMETHEUS} not installed (node scripts/bootstrap.mjs --test installs it)`;
  return undefined;
}
const skip = skipReason();
if (skip) console.log(`Prometheus dashboard tests skipped: ${skip}`);

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface PromSeries {
  metric: Record<string, string>;
  value: [number, string];
}

class PromApi {
  constructor(readonly base: string) {}

  async get<T>(path: string, params: Record<string, string | string[]>): Promise<T> {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(params)) for (const x of Array.isArray(v) ? v : [v]) q.append(k, x);
    const res = await fetch(`${this.base}${path}?${q}`);
    const body = (await res.json()) as { status: string; data: T; error?: string };
    if (body.status !== 'success') throw new Error(`${path} ${JSON.stringify(params)}: ${body.error}`);
    return body.data;
  }

  async query(expr: string, time?: number): Promise<PromSeries[]> {
    const data = await this.get<{ resultType: string; result: PromSeries[] }>('/api/v1/query', time === undefined ? { query: expr } : { query: expr, time: String(time) });
    if (data.resultType !== 'vector') throw new Error(`${expr}: ${data.resultType}, not a vector`);
    return data.result;
  }

  /** Every series of a selector over the last `window` before `time`, with its raw samples [seconds, value]. */
  async matrix(selector: string, window: string, time: number): Promise<{ metric: Record<string, string>; values: [number, number][] }[]> {
    const data = await this.get<{ result: { metric: Record<string, string>; values: [number, string][] }[] }>('/api/v1/query', { query: `${selector}[${window}]`, time: String(time) });
    return data.result.map((r) => ({ metric: r.metric, values: r.values.map(([t, v]) => [t, Number(v)] as [number, number]) }));
  }

  /** The raw samples of a single-series selector over the last `window` before `time`: [seconds, value]. */
  async samples(selector: string, window: string, time?: number): Promise<[number, number][]> {
    const data = await this.get<{ result: { values: [number, string][] }[] }>('/api/v1/query', { query: `${selector}[${window}]`, ...(time ? { time: String(time) } : {}) });
    return (data.result[0]?.values ?? []).map(([t, v]) => [t, Number(v)]);
  }
}

/** A child process whose stdout/stderr are collected. */
function start(cmd: string, args: string[], opts: { argv0?: string } = {}): { child: ChildProcess; out: () => string; err: () => string; exited: Promise<number | null> } {
  const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], argv0: opts.argv0 });
  let out = '';
  let err = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return { child, out: () => out, err: () => err, exited };
}

async function until<T>(what: string, f: () => Promise<T | undefined> | T | undefined, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await f();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

interface Target {
  where: string;
  expr: string;
}

/** Every PromQL a dashboard runs (panel targets, query variables), with Grafana's variables expanded. */
function promTargets(file: string, window: string): Target[] {
  const dash = JSON.parse(readFileSync(join(DASHBOARD_DIR, file), 'utf8')) as {
    panels: { title: string; targets?: { expr?: string; datasource?: { type?: string } }[]; datasource?: { type?: string }; panels?: unknown[] }[];
    templating?: { list?: { name: string; type: string; query?: unknown; definition?: string }[] };
  };
  const vars = new Map<string, string>([
    ['__rate_interval', window],
    ['__range', window],
    ['__interval', window],
  ]);
  for (const v of dash.templating?.list ?? []) if (v.type === 'query') vars.set(v.name, '.*');
  const expand = (q: string) => q.replace(/\$\{?(\w+)\}?/g, (m, name: string) => vars.get(name) ?? m);
  const out: Target[] = [];
  for (const p of dash.panels) {
    for (const [i, t] of (p.targets ?? []).entries()) {
      if ((t.datasource ?? p.datasource)?.type !== 'prometheus') continue;
      out.push({ where: `${file}: "${p.title}" ${String.fromCharCode(65 + i)}`, expr: expand(t.expr!) });
    }
  }
  for (const v of dash.templating?.list ?? []) {
    if (v.type !== 'query') continue;
    const q = typeof v.query === 'string' ? v.query : ((v.query as { query?: string })?.query ?? v.definition ?? '');
    out.push({ where: `${file}: variable $${v.name}`, expr: q });
  }
  return out;
}

describe.skipIf(skip !== undefined)('dashboards on a real Prometheus', () => {
  const dir = mkdtempSync(join(tmpdir(), 'kvm-trace-prom-'));
  const node = join(dir, COMM);
  const procs: ChildProcess[] = [];
  let rx: OtlpReceiver;
  let prom: PromApi;
  let target: string;
  /** Evaluation time and window (ms): from a settled scrape after the warm-up to one after the measured run. */
  let tEval: number;
  let windowMs: number;
  let summary: SummaryRecord;
  let otelLine: string;
  let records: TraceRecord[];
  /** Pids of the measured run's processes (guest and ABI-mistake VMM). */
  let measured: Set<number>;
  let guestElapsedS: number;

  /** A kvm-trace command run as the traced command name; resolves with its stdout. */
  async function traced(args: string[]): Promise<string> {
    const p = start(node, args);
    procs.push(p.child);
    const code = await p.exited;
    if (code !== 0) throw new Error(`${args.join(' ')} exited ${code}: ${p.err()}`);
    return p.out();
  }
  const guest = (exits: number) => traced([cli, 'guest', '--scenario', 'all', '--vcpus', '2', '--exits', String(exits), '--no-long-mode', '--json']);
  const mistakes = (rounds: number, intervalMs: number) => traced([join(root, 'test', 'helpers', 'abi-mistake-vmm.mjs'), join(root, 'dist'), String(rounds), String(intervalMs)]);

  /**
   * The timestamp of a scrape after which nothing changed: three equal samples in a row of the KVM_RUN
   * counter (every KVM_RUN of every process increments it).
   */
  async function settled(): Promise<number> {
    return until('the counters to settle', async () => {
      const raw = await prom.samples(`kvm_trace_runs_aggregated_total{instance="${target}"}`, '10s');
      if (raw.length < 3) return undefined;
      const [a, b, c] = raw.slice(-3);
      if (a[1] !== b[1] || b[1] !== c[1]) return undefined;
      const calls = async (t: number) => Number((await prom.query(`sum(kvm_ioctl_calls_total{instance="${target}"})`, t))[0]?.value[1] ?? NaN);
      return (await calls(a[0])) === (await calls(c[0])) ? c[0] : undefined;
    });
  }

  beforeAll(async () => {
    symlinkSync(process.execPath, node);
    rx = await startOtlpReceiver();
    const jsonl = join(dir, 'capture.jsonl');
    const attach = start(process.execPath, [cli, 'attach', '-c', COMM, '--ring-mb', '64', '--prometheus', '0', '--otlp', rx.url, '-o', jsonl, '-q', '--json']);
    procs.push(attach.child);
    const url = await until('attach to serve metrics', () => /Prometheus metrics at (http:\/\/\S+)\/metrics/.exec(attach.err())?.[1], 60_000);
    await until('attach to attach', () => (/attached:/.test(attach.err()) ? true : undefined), 60_000);
    target = new URL(url).host;

    const promPort = await freePort();
    const config = join(dir, 'prometheus.yml');
    writeFileSync(
      config,
      [
        'global:',
        `  scrape_interval: ${SCRAPE_S}s`,
        `  evaluation_interval: ${SCRAPE_S}s`,
        'scrape_configs:',
        '  - job_name: kvm-trace',
        `    scrape_interval: ${SCRAPE_S}s`,
        '    scrape_timeout: 900ms',
        '    static_configs:',
        `      - targets: ['${target}']`,
        '',
      ].join('\n'),
    );
    const p = start(PROMETHEUS, [
      `--config.file=${config}`,
      `--storage.tsdb.path=${join(dir, 'data')}`,
      `--web.listen-address=127.0.0.1:${promPort}`,
      '--log.level=warn',
    ]);
    procs.push(p.child);
    prom = new PromApi(`http://127.0.0.1:${promPort}`);
    await until('prometheus to be ready', async () => ((await fetch(`${prom.base}/-/ready`).catch(() => undefined))?.status === 200 ? true : undefined));
    await until('a successful scrape', async () => ((await prom.query(`up{instance="${target}"} == 1`)).length > 0 ? true : undefined));

    // Warm-up: every ioctl, error and flag series exists before the measured run.
    await Promise.all([guest(2000), mistakes(5, 20)]);
    const tStart = await settled();

    // The measured run: the reference guest for several scrape intervals, the ABI mistakes alongside.
    const [g, m] = await Promise.all([guest(60_000), mistakes(150, 30)]);
    const gj = JSON.parse(g) as { pid: number; elapsed_s: number };
    const mj = JSON.parse(m) as { pid: number };
    measured = new Set([gj.pid, mj.pid]);
    guestElapsedS = gj.elapsed_s;
    tEval = await settled();
    windowMs = Math.round((tEval - tStart) * 1000);

    attach.child.kill('SIGINT');
    expect(await attach.exited).toBe(0);
    summary = JSON.parse(attach.out().trim().split('\n').at(-1)!) as SummaryRecord;
    otelLine = /otel: .*/.exec(attach.err())?.[0] ?? '';
    records = readFileSync(jsonl, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as TraceRecord);
  }, 240_000);

  afterAll(async () => {
    for (const c of procs) if (c.exitCode === null && c.signalCode === null) c.kill('SIGTERM');
    await rx?.close();
    await sleep(200);
    rmSync(dir, { recursive: true, force: true });
  });

  it('the measured run lasted several scrape intervals and the capture lost nothing', () => {
    expect(guestElapsedS).toBeGreaterThan(4 * SCRAPE_S);
    expect(windowMs).toBeGreaterThan(guestElapsedS * 1000);
    expect(summary.lost).toBe(0);
    expect(otelLine).toMatch(/ 0 dropped/);
    expect(records.at(-1)!.type).toBe('summary');
  });

  const files = readdirSync(DASHBOARD_DIR).filter((f) => f.endsWith('.json'));
  it.each(files)('%s: every PromQL query returns series whose values equal the capture', async (file) => {
    const win = `${windowMs}ms`;
    const W = windowMs / 1000;
    const ioctls = records.filter((r): r is IoctlRecord => r.type === 'ioctl');
    const inWindow = ioctls.filter((r) => measured.has(r.pid));
    const count = <K extends string>(recs: IoctlRecord[], key: (r: IoctlRecord) => K | undefined): Map<K, number> => {
      const m = new Map<K, number>();
      for (const r of recs) {
        const k = key(r);
        if (k !== undefined) m.set(k, (m.get(k) ?? 0) + 1);
      }
      return m;
    };
    const exact = (got: number, want: number, what: string) => expect(got, what).toBeCloseTo(want, 6);
    const proved: string[] = [];

    for (const t of promTargets(file, win)) {
      const lv = /^\s*label_values\(\s*(\w+)\s*,\s*(\w+)\s*\)\s*$/.exec(t.expr);
      if (lv) {
        const values = await prom.get<string[]>(`/api/v1/label/${lv[2]}/values`, { 'match[]': lv[1] });
        expect(values.length, `${t.where}: no values`).toBeGreaterThan(0);
        if (lv[2] === 'instance') expect(values, t.where).toEqual([target]);
        if (lv[2] === 'kvm_ioctl_name') expect(values.sort(), t.where).toEqual(Object.keys(summary.ioctls).sort());
        if (lv[2] === 'process_pid') expect(values.sort(), t.where).toEqual([...new Set(Object.keys(summary.exits).map((k) => k.split('/')[0]))].sort());
        proved.push(`${t.where} = ${values.length} values`);
        continue;
      }
      const res = await prom.query(t.expr, tEval);
      expect(res.length, `${t.where}: no series for ${t.expr}`).toBeGreaterThan(0);
      const v = (s: PromSeries) => Number(s.value[1]);
      const m = (s: PromSeries, l: string) => s.metric[l] ?? '';
      const e = t.expr;

      if (/^sum by \(kvm_ioctl_name\) \(rate\(kvm_ioctl_calls_total/.test(e)) {
        const want = count(inWindow, (r) => r.name);
        expect(new Set(res.map((s) => m(s, 'kvm_ioctl_name'))), t.where).toEqual(new Set(Object.keys(summary.ioctls)));
        for (const s of res) exact(v(s) * W, want.get(m(s, 'kvm_ioctl_name')) ?? 0, `${t.where} ${m(s, 'kvm_ioctl_name')}`);
      } else if (/error_type!=""/.test(e)) {
        // A count panel: the whole capture, by name and errno; per name it is the summary's error count.
        const want = count(ioctls, (r) => (r.errno ? `${r.name} ${r.errno}` : undefined));
        expect(new Set(res.map((s) => `${m(s, 'kvm_ioctl_name')} ${m(s, 'error_type')}`)), t.where).toEqual(new Set(want.keys()));
        for (const s of res) exact(v(s), want.get(`${m(s, 'kvm_ioctl_name')} ${m(s, 'error_type')}`)!, t.where);
        for (const [name, st] of Object.entries(summary.ioctls)) {
          exact(res.filter((s) => m(s, 'kvm_ioctl_name') === name).reduce((a, s) => a + v(s), 0), st.errors, `${t.where} ${name} vs the summary`);
        }
      } else if (/kvm_vmm_handling_duration_seconds_bucket|kvm_run_duration_seconds_bucket/.test(e)) {
        // p99 of VMM handling time per exit key over the whole capture (a count panel: last_over_time of the
        // cumulative buckets), or of KVM_RUN latency per exit reason over the window (rate: the reasons' series
        // exist from the warm-up on): the same bucket as the exact p99 of the records, or its neighbour (see the
        // ioctl p99 below).
        const handling = /kvm_vmm_handling/.test(e);
        const samples = new Map<string, number[]>();
        const add = (k: string, x: number) => (samples.get(k) ?? samples.set(k, []).get(k)!).push(x);
        if (handling) {
          const tracker = new VmmHandlingTracker({ onSample: (x) => add(x.key, x.ns / 1e9) });
          for (const r of records) tracker.write(r);
        } else {
          for (const r of inWindow) if (r.name === 'KVM_RUN' && !r.no_enter) add(exitReasonOf(r), r.latency_ns / 1e9);
        }
        const key = (x: PromSeries) => m(x, handling ? 'kvm_exit_key' : 'kvm_exit_reason');
        expect(new Set(res.map(key)), t.where).toEqual(new Set(samples.keys()));
        const bucket = (x: number) => DURATION_BUCKETS_S.findIndex((b) => x <= b);
        for (const s of res) {
          const lat = samples.get(key(s))!.sort((a, b) => a - b);
          const p99 = lat[Math.ceil(0.99 * lat.length) - 1];
          expect(Math.abs(bucket(v(s)) - bucket(p99)), `${t.where} ${key(s)}: ${v(s)} vs p99 ${p99} of ${lat.length}`).toBeLessThanOrEqual(1);
        }
      } else if (/^histogram_quantile\(0\.99/.test(e)) {
        for (const s of res) {
          const lat = inWindow.filter((r) => r.name === m(s, 'kvm_ioctl_name') && !r.no_enter).map((r) => r.latency_ns / 1e9).sort((a, b) => a - b);
          const p99 = lat[Math.ceil(0.99 * lat.length) - 1];
          // histogram_quantile interpolates inside the bucket holding the 99th percentile: the same bucket
          // as the exact p99 of the records (or its neighbour when the rank sits on a bucket edge).
          const bucket = (x: number) => DURATION_BUCKETS_S.findIndex((b) => x <= b);
          expect(Math.abs(bucket(v(s)) - bucket(p99)), `${t.where} ${m(s, 'kvm_ioctl_name')}: ${v(s)} vs p99 ${p99}`).toBeLessThanOrEqual(1);
        }
        expect(res.some((s) => m(s, 'kvm_ioctl_name') === 'KVM_RUN')).toBe(true);
      } else if (/duration_seconds_sum/.test(e)) {
        for (const s of res) {
          const lat = inWindow.filter((r) => r.name === m(s, 'kvm_ioctl_name') && !r.no_enter).map((r) => r.latency_ns / 1e9);
          expect(v(s), `${t.where} ${m(s, 'kvm_ioctl_name')}`).toBeCloseTo(lat.reduce((a, b) => a + b, 0) / lat.length, 9);
        }
      } else if (/last_over_time\(kvm_exits_total/.test(e)) {
        // A count panel: exits by reason over the whole capture, as the summary counts them.
        const want = new Map<string, number>();
        for (const reasons of Object.values(summary.exits)) for (const [reason, n] of Object.entries(reasons)) want.set(reason, (want.get(reason) ?? 0) + n);
        expect(new Set(res.map((s) => m(s, 'kvm_exit_reason'))), t.where).toEqual(new Set(want.keys()));
        for (const s of res) exact(v(s), want.get(m(s, 'kvm_exit_reason'))!, `${t.where} ${m(s, 'kvm_exit_reason')}`);
      } else if (/rate\(kvm_exits_total/.test(e)) {
        const exits = inWindow.filter((r) => r.name === 'KVM_RUN' && r.exit && !r.errno);
        // Each exporter series (pid, VM, vCPU, reason) is new in the measured run: it misses what came before
        // its first scrape.
        const series = new Map<string, number[]>();
        for (const r of exits) {
          const k = `${r.pid}/${r.vm}/${r.vcpu}/${r.exit!.reason}`;
          const ts = series.get(k);
          if (ts) ts.push(r.ts_ns);
          else series.set(k, [r.ts_ns]);
        }
        const raw = await prom.matrix(`kvm_exits_total{instance="${target}"}`, win, tEval);
        const key = (x: { metric: Record<string, string> }) => `${x.metric.process_pid}/${x.metric.kvm_vm}/${x.metric.kvm_vcpu}/${x.metric.kvm_exit_reason}`;
        // Series of the warm-up's processes did not move in the window.
        for (const s of res.filter((x) => !series.has(key(x)))) expect(v(s), `${t.where} ${key(s)}`).toBe(0);
        for (const [k, ts] of series) {
          const r = raw.find((x) => key(x) === k);
          const s = res.find((x) => key(x) === k);
          expect(r && s, `${t.where}: no series ${k}`).toBeTruthy();
          // The counter itself is exact; the rate sees its growth from the first scrape on (Prometheus may
          // extrapolate toward the window's start, never past the truth).
          const first = r!.values[0][1];
          const last = r!.values.at(-1)![1];
          expect(last, `kvm_exits_total ${k} at ${tEval}`).toBe(ts.length);
          const got = v(s!) * W;
          expect(got, `${t.where} ${k}: above the truth ${ts.length}`).toBeLessThanOrEqual(ts.length * 1.000001);
          expect(got, `${t.where} ${k}: below the truth ${ts.length} less the ${first} before the first scrape`).toBeGreaterThanOrEqual(last - first - 1e-6);
        }
      } else if (/kvm_buffer_flags_total/.test(e)) {
        // A count panel: flagged buffers of the whole capture; per flag it is the summary's count.
        const want = new Map<string, number>();
        for (const r of ioctls) {
          for (const f of r.flags ?? []) {
            for (const [on, flag] of [[f.misaligned, 'misaligned'], [f.cacheline_cross, 'cacheline_cross']] as const) {
              if (on) want.set(`${r.name} ${flag} ${f.what}`, (want.get(`${r.name} ${flag} ${f.what}`) ?? 0) + 1);
            }
          }
        }
        const key = (s: PromSeries) => `${m(s, 'kvm_ioctl_name')} ${m(s, 'kvm_buffer_flag')} ${m(s, 'kvm_buffer_what')}`;
        expect(new Set(res.map(key)), t.where).toEqual(new Set(want.keys()));
        for (const s of res) exact(v(s), want.get(key(s))!, `${t.where} ${key(s)}`);
        const flags = summary.flags as { misaligned: number; cacheline_cross: number };
        for (const flag of ['misaligned', 'cacheline_cross'] as const) {
          exact(res.filter((s) => m(s, 'kvm_buffer_flag') === flag).reduce((a, s) => a + v(s), 0), flags[flag], `${t.where} ${flag} vs the summary`);
        }
      } else if (/kvm_records_lost_total/.test(e)) {
        exact(v(res[0]), summary.lost, t.where);
      } else if (/kvm_records_decode_errors_total|kvm_ring_resyncs_total/.test(e)) {
        // Set from the summary at the end of the capture, 0 while it runs (tEval is before its end): the series
        // exists from the start, and this clean capture's summary must say 0 too.
        exact(v(res[0]), 0, t.where);
        exact(Number(/decode_errors/.test(e) ? summary.decode_errors : summary.ring_resyncs), 0, `${t.where}: the summary`);
      } else if (/kvm_trace_spans_dropped_total/.test(e)) {
        exact(v(res[0]), Number(/(\d+) dropped/.exec(otelLine)![1]), t.where);
      } else if (/kvm_trace_runs_aggregated_total/.test(e)) {
        exact(v(res[0]), summary.ioctls.KVM_RUN.count, t.where);
        expect(otelLine).toContain(`${summary.ioctls.KVM_RUN.count} KVM_RUNs in aggregate spans`);
      } else if (/kvm_trace_runs_sampled_out_total/.test(e)) {
        exact(v(res[0]), 0, t.where);
      } else {
        throw new Error(`${t.where}: no expectation for ${e} — add one`);
      }
      const top = [...res].sort((a, b) => v(b) - v(a)).slice(0, 3).map((x) => `${Object.values(x.metric).join(' ') || 'total'}=${Number(v(x).toPrecision(6))}`);
      proved.push(`${t.where}: ${res.length} series (${top.join(', ')}${res.length > 3 ? ', …' : ''})`);
    }
    // How the scrapes went (a loaded machine delays the endpoint: informative, not a verdict).
    const up = await prom.query(`count_over_time(up{instance="${target}"}[${win}]) - sum_over_time(up{instance="${target}"}[${win}])`, tEval);
    const slowest = await prom.query(`max_over_time(scrape_duration_seconds{instance="${target}"}[${win}])`, tEval);
    proved.push(`scrapes: ${up[0]?.value[1]} failed in the window, slowest ${Number(slowest[0]?.value[1]).toFixed(3)} s`);
    console.log(`Prometheus ${tEval.toFixed(3)}, window ${win}:\n  ${proved.join('\n  ')}`);
  });
});
