/**
 * The pure parts of the OpenTelemetry export: option/environment resolution, the monotonic → epoch clock,
 * the KVM_RUN window rule, the CLI flags, the summary line.
 */
import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { Command, CommanderError } from 'commander';
import { describe, expect, it } from 'vitest';
import type { IoctlRecord } from '../src/decode/records.js';
import { addOtelOptions, otelOptionsFrom } from '../src/cli/commands/otel-lazy.js';
import { MonotonicToEpoch, readClockPair } from '../src/export/otel/clock.js';
import { otelOptionsFrom as exportStageOptionsFrom, otelSummaryLine } from '../src/export/otel/flags.js';
import { OtelOptionError, resolveOtelConfig, signalUrl, type OtelSinkOptions } from '../src/export/otel/options.js';
import { RunAggregator, type RunWindow } from '../src/export/otel/run-aggregator.js';
import { ioctlAttributes, exitAttributes } from '../src/export/otel/attributes.js';

describe('endpoint and option resolution', () => {
  it.each([
    ['http://localhost:4318', 'traces', 'http://localhost:4318/v1/traces'],
    ['http://localhost:4318/', 'metrics', 'http://localhost:4318/v1/metrics'],
    ['https://gw.example/otlp', 'traces', 'https://gw.example/otlp/v1/traces'],
    ['http://c:4318/v1/traces', 'traces', 'http://c:4318/v1/traces'],
    ['http://c:4318/v1/traces', 'metrics', 'http://c:4318/v1/metrics'],
    ['http://c:4318/x/v1/metrics/', 'traces', 'http://c:4318/x/v1/traces'],
  ] as const)('signalUrl(%s, %s) = %s', (base, signal, want) => {
    expect(signalUrl(base, signal)).toBe(want);
  });

  type Env = Record<string, string>;
  it.each<[string, OtelSinkOptions, Env, Partial<ReturnType<typeof resolveOtelConfig>>]>([
    ['defaults, nothing configured', {}, {}, { traces: undefined, metrics: undefined, serviceName: undefined, flushTimeoutMs: 3000 }],
    [
      'a base endpoint in the environment: both signals, the exporters resolve the URL themselves',
      {},
      { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://col:4318' },
      { traces: { protocol: 'http/protobuf' }, metrics: { protocol: 'http/protobuf' } },
    ],
    [
      'a per-signal endpoint exports only that signal',
      {},
      { OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'http://t:1/custom' },
      { traces: { protocol: 'http/protobuf' }, metrics: undefined },
    ],
    ['OTEL_METRICS_EXPORTER=otlp asks for metrics at the default endpoint', {}, { OTEL_METRICS_EXPORTER: 'otlp' }, { traces: undefined, metrics: { protocol: 'http/protobuf' } }],
    ['OTEL_TRACES_EXPORTER=none turns traces off, even with --otlp', { endpoint: 'http://c:4318' }, { OTEL_TRACES_EXPORTER: 'none' }, { traces: undefined }],
    [
      'explicit endpoint and protocol win over the environment; HTTP gets /v1/<signal>',
      { endpoint: 'http://mine:4318', protocol: 'http/json', serviceName: 'svc' },
      { OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'http://t:1/x', OTEL_EXPORTER_OTLP_PROTOCOL: 'http/protobuf' },
      {
        traces: { protocol: 'http/json', url: 'http://mine:4318/v1/traces' },
        metrics: { protocol: 'http/json', url: 'http://mine:4318/v1/metrics' },
        serviceName: 'svc',
      },
    ],
    [
      'gRPC takes the endpoint as given',
      { endpoint: 'http://127.0.0.1:4317' },
      { OTEL_EXPORTER_OTLP_PROTOCOL: 'grpc' },
      { traces: { protocol: 'grpc', url: 'http://127.0.0.1:4317' }, metrics: { protocol: 'grpc', url: 'http://127.0.0.1:4317' } },
    ],
    [
      'per-signal protocol beats the common one',
      {},
      { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:1', OTEL_EXPORTER_OTLP_PROTOCOL: 'grpc', OTEL_EXPORTER_OTLP_METRICS_PROTOCOL: 'http/json' },
      { traces: { protocol: 'grpc' }, metrics: { protocol: 'http/json' } },
    ],
    ['metrics: false', { endpoint: 'http://c:1', metrics: false }, {}, { traces: { protocol: 'http/protobuf', url: 'http://c:1/v1/traces' }, metrics: undefined }],
    [
      'run spans and bounds',
      { runSpans: { mode: 'sample', sampleEvery: 7 }, flushTimeoutMs: 500, maxQueue: 100 },
      {},
      { runSpans: { mode: 'sample', sampleEvery: 7, windowMs: 1000 }, flushTimeoutMs: 500, maxQueue: 100 },
    ],
    ['prometheus binds loopback by default', { prometheus: { port: 0 } }, {}, { prometheus: { port: 0, host: '127.0.0.1' } }],
  ])('%s', (_what, opts, env, want) => {
    const got = resolveOtelConfig(opts, env);
    expect(got).toMatchObject(want);
    for (const signal of ['traces', 'metrics'] as const) if (want[signal] && !('url' in want[signal]!)) expect(got[signal]!.url).toBeUndefined();
  });

  it.each<[OtelSinkOptions, Env, RegExp]>([
    [{ endpoint: 'localhost:4318' }, {}, /must be http:\/\/ or https:\/\//],
    [{ endpoint: 'not a url' }, {}, /is not a URL/],
    [{ endpoint: 'http://c:1' }, { OTEL_EXPORTER_OTLP_PROTOCOL: 'thrift' }, /OTEL_EXPORTER_OTLP_PROTOCOL "thrift" is not one of grpc, http\/protobuf, http\/json/],
    [{ endpoint: 'http://c:1' }, { OTEL_SDK_DISABLED: 'TRUE' }, /OTEL_SDK_DISABLED=true/],
    [{ runSpans: { mode: 'every' as never } }, {}, /run span mode "every"/],
    [{ runSpans: { mode: 'sample', sampleEvery: 0 } }, {}, /run sample interval must be a positive integer/],
    [{ flushTimeoutMs: -1 }, {}, /flush timeout/],
    [{ prometheus: { port: 70000 } }, {}, /Prometheus port/],
  ])('rejects %o with one line', (opts, env, re) => {
    expect(() => resolveOtelConfig(opts, env)).toThrow(re);
    expect(() => resolveOtelConfig(opts, env)).toThrow(OtelOptionError);
  });
});

describe('monotonic → epoch clock', () => {
  it('converts exactly with the paired offset, carrying nanoseconds into seconds', () => {
    const pair = { monoNs: 5_000_000_000n, epochNs: 1_700_000_000_999_999_999n };
    const c = new MonotonicToEpoch(pair);
    expect(c.hrTime(5_000_000_000)).toEqual([1_700_000_000, 999_999_999]);
    expect(c.hrTime(5_000_000_001)).toEqual([1_700_000_001, 0]);
    expect(c.hrTime(6_234_567_890)).toEqual([1_700_000_002, 234_567_889]);
    expect(c.epochNs(6_234_567_890)).toBe(1_700_000_002_234_567_889n);
  });

  it('a real pairing agrees with Date.now() to within a few ms', () => {
    const c = new MonotonicToEpoch(readClockPair());
    const [s, ns] = c.hrTime(MonotonicToEpoch.nowNs());
    expect(Math.abs(s * 1e3 + ns / 1e6 - Date.now())).toBeLessThan(5);
  });
});

/** A KVM_RUN record; times are relative to T0 (a monotonic clock never reads 0, which means "entry not seen"). */
const T0 = 1_000_000_000;
function run(vcpu: number, enterNs: number, latency: number, extra: Partial<IoctlRecord> = {}): IoctlRecord {
  return {
    type: 'ioctl', ts_ns: T0 + enterNs + latency, enter_ns: T0 + enterNs, pid: 10, tid: 11 + vcpu, comm: 'v', fd: 5 + vcpu, fd_kind: 'vcpu', vm: 0,
    vcpu, cmd: '0xae80', name: 'KVM_RUN', size: 0, dir: 'none', arg: '0x0', ret: 0, errno: null, latency_ns: latency,
    exit: { reason: 'IO', code: 2 }, ...extra,
  };
}

describe('KVM_RUN window rule', () => {
  it('a run entering at or past first-enter + window closes the window; vCPUs are independent', () => {
    const out: RunWindow[] = [];
    const agg = new RunAggregator(1, (w) => out.push(w), () => 0); // 1 ms windows
    agg.add(run(0, 0, 10));
    agg.add(run(1, 100, 10));
    agg.add(run(0, 999_999, 10)); // still in window 0 of vCPU 0
    expect(out).toHaveLength(0);
    agg.add(run(0, 1_000_000, 10, { ret: -1, errno: 'EINTR', exit: undefined })); // opens window 1
    expect(out).toHaveLength(1);
    expect(out[0]).toMatchObject({ vcpu: 0, count: 2, firstEnterNs: T0, lastExitNs: T0 + 1_000_009, latencySumNs: 20 });
    expect([...out[0].exits]).toEqual([['IO', 2]]);
    agg.flushVcpu(10, 0, 0);
    expect(out[1]).toMatchObject({ vcpu: 0, count: 1, errors: 1 });
    expect([...out[1].errnos]).toEqual([['EINTR', 1]]);
    agg.flushAll();
    expect(out[2]).toMatchObject({ vcpu: 1, count: 1 });
    expect(agg.openWindows).toBe(0);
  });

  it('a run seen without its entry counts but does not enter the latency fields', () => {
    const out: RunWindow[] = [];
    const agg = new RunAggregator(1000, (w) => out.push(w), () => 0);
    agg.add(run(0, 0, 0, { enter_ns: 0, ts_ns: T0 + 5_000, latency_ns: 0, no_enter: true }));
    agg.add(run(0, 6_000, 7_000));
    agg.flushAll();
    expect(out[0]).toMatchObject({ count: 2, timed: 1, firstEnterNs: T0 + 5_000, latencyMinNs: 7_000, latencySumNs: 7_000 });
  });

  it('idle windows are closed after windowMs of wall time', () => {
    let wall = 1000;
    const out: RunWindow[] = [];
    const agg = new RunAggregator(50, (w) => out.push(w), () => wall);
    agg.add(run(0, 0, 10));
    wall += 49;
    agg.flushIdle();
    expect(out).toHaveLength(0);
    wall += 1;
    agg.flushIdle();
    expect(out).toHaveLength(1);
  });
});

describe('attributes', () => {
  it('exit details are flattened to kvm.exit.<detail>', () => {
    expect(exitAttributes({ reason: 'MMIO', code: 6, phys_addr: '0xfee00000', len: 4, is_write: true, data: [1, 2], nested: { a: 1 } })).toEqual({
      'kvm.exit.reason': 'MMIO',
      'kvm.exit.code': 6,
      'kvm.exit.phys_addr': '0xfee00000',
      'kvm.exit.len': 4,
      'kvm.exit.is_write': true,
      'kvm.exit.data': [1, 2],
      'kvm.exit.nested.a': 1,
    });
  });

  it('large decoded arguments are capped', () => {
    const entries = Array.from({ length: 400 }, (_, i) => ({ function: i, eax: '0x0' }));
    const a = ioctlAttributes({ ...run(0, 0, 1), name: 'KVM_SET_CPUID2', args: { nent: 400, entries } });
    expect((a['kvm.ioctl.args'] as string).length).toBe(2048);
  });
});

describe('CLI flags', () => {
  function parse(argv: string[]) {
    const cmd = addOtelOptions(new Command('attach').exitOverride().configureOutput({ writeErr: () => {}, writeOut: () => {} }));
    cmd.action(() => {});
    cmd.parse(argv, { from: 'user' });
    return cmd.opts();
  }

  it('parses every flag into sink options', () => {
    const o = otelOptionsFrom(
      parse([
        '--otlp', 'http://c:4318', '--otlp-protocol', 'http/json', '--service-name', 's', '--run-spans', 'sample',
        '--run-sample-every', '10', '--run-window', '250', '--otlp-flush-timeout', '2000', '--otlp-queue', '100',
        '--prometheus', '0', '--prometheus-host', '::1',
      ]),
      {},
    );
    expect(o).toMatchObject({
      endpoint: 'http://c:4318',
      protocol: 'http/json',
      serviceName: 's',
      runSpans: { mode: 'sample', sampleEvery: 10, windowMs: 250 },
      flushTimeoutMs: 2000,
      maxQueue: 100,
      prometheus: { port: 0, host: '::1' },
    });
  });

  it('no flag and no environment: no export; OTEL_SDK_DISABLED silences the environment', () => {
    expect(otelOptionsFrom(parse([]), {})).toBeUndefined();
    expect(otelOptionsFrom(parse([]), { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4318' })).toMatchObject({ runSpans: { mode: 'aggregate' } });
    expect(otelOptionsFrom(parse([]), { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4318', OTEL_SDK_DISABLED: 'true' })).toBeUndefined();
  });

  it('--otlp-protocol grpc is accepted', () => {
    expect(otelOptionsFrom(parse(['--otlp', 'http://c:4317', '--otlp-protocol', 'grpc']), {})).toMatchObject({ protocol: 'grpc' });
  });

  it.each([
    [['--run-spans', 'some']],
    [['--otlp-protocol', 'thrift']],
    [['--run-window', '0']],
    [['--prometheus', '99999']],
    [['--otlp-queue', 'lots']],
  ])('%o is a usage error', (argv) => {
    expect(() => parse(argv)).toThrow(CommanderError);
  });

  it('a bad URL, or flags that conflict with OTEL_SDK_DISABLED, are usage CliErrors; the export stage throws its own error', () => {
    expect(() => otelOptionsFrom(parse(['--otlp', 'ftp://x']), {})).toThrow(expect.objectContaining({ code: 'usage' }));
    expect(() => otelOptionsFrom(parse(['--prometheus', '0']), { OTEL_SDK_DISABLED: 'true' })).toThrow(expect.objectContaining({ code: 'usage' }));
    expect(() => exportStageOptionsFrom({ otlp: 'ftp://x' }, {})).toThrow(OtelOptionError);
  });

  it('summary line', () => {
    expect(
      otelSummaryLine({ spans: 12, exported: 10, dropped: 2, exportErrors: 1, aggregatedRuns: 5000, sampledOutRuns: 0, internalErrors: 0 }),
    ).toBe('otel: 12 spans, 10 exported, 2 dropped, 1 failed export requests; 5000 KVM_RUNs in aggregate spans');
  });
});

describe('lazy loading', () => {
  it('the CLI reaches no OpenTelemetry package through static imports: the SDK loads only when an export is asked for', () => {
    const src = join(import.meta.dirname, '..', 'src');
    const seen = new Set<string>();
    const bare = new Set<string>();
    const visit = (file: string) => {
      if (seen.has(file)) return;
      seen.add(file);
      const text = readFileSync(file, 'utf8');
      // Static imports and re-exports that exist at run time (not `import type`).
      const specs = [...text.matchAll(/^(?:import|export)\s+(?!type\b)[^;]*?from\s+'([^']+)'/gms)].map((m) => m[1]);
      // Dynamic imports run too (the program loads every command module) — except the one under test.
      if (!file.endsWith('otel-lazy.ts')) specs.push(...[...text.matchAll(/\bimport\('([^']+)'\)/g)].map((m) => m[1]));
      for (const spec of specs) {
        if (spec.startsWith('.')) visit(resolve(dirname(file), spec.replace(/\.js$/, '.ts')));
        else bare.add(spec);
      }
    };
    visit(join(src, 'cli', 'main.ts'));
    expect(seen.size).toBeGreaterThan(20);
    expect([...bare].filter((b) => b.startsWith('@opentelemetry/'))).toEqual([]);
    expect(readFileSync(join(src, 'cli', 'commands', 'otel-lazy.ts'), 'utf8')).toContain("await import('../../export/otel/sink.js')");
  });
});
