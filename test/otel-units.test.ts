/**
 * The pure parts of the OpenTelemetry export: option/environment resolution, the monotonic → epoch clock,
 * the KVM_RUN window rule, the CLI flags, the summary line.
 */
import { Command, CommanderError } from 'commander';
import { describe, expect, it } from 'vitest';
import type { IoctlRecord } from '../src/decode/records.js';
import { addOtelOptions, otelOptionsFrom, otelSummaryLine } from '../src/export/otel/cli-options.js';
import { MonotonicToEpoch, readClockPair } from '../src/export/otel/clock.js';
import { resolveOtelConfig, signalUrl, type OtelSinkOptions } from '../src/export/otel/config.js';
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

  it.each<[string, OtelSinkOptions, Partial<ReturnType<typeof resolveOtelConfig>>]>([
    ['defaults, nothing configured', { env: {} }, { tracesUrl: undefined, metricsUrl: undefined, tracesProtocol: 'http/protobuf', serviceName: 'kvm-trace' }],
    [
      'base endpoint from the environment',
      { env: { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://col:4318' } },
      { tracesUrl: 'http://col:4318/v1/traces', metricsUrl: 'http://col:4318/v1/metrics' },
    ],
    [
      'per-signal variables are used as given and beat the base',
      {
        env: {
          OTEL_EXPORTER_OTLP_ENDPOINT: 'http://col:4318',
          OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'http://t:1/custom',
          OTEL_EXPORTER_OTLP_METRICS_ENDPOINT: 'http://m:2/m',
        },
      },
      { tracesUrl: 'http://t:1/custom', metricsUrl: 'http://m:2/m' },
    ],
    [
      'explicit endpoint, protocol and service name win over the environment',
      {
        endpoint: 'http://mine:4318',
        protocol: 'http/json',
        serviceName: 'svc',
        env: { OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'http://t:1/x', OTEL_EXPORTER_OTLP_PROTOCOL: 'http/protobuf', OTEL_SERVICE_NAME: 'env' },
      },
      { tracesUrl: 'http://mine:4318/v1/traces', tracesProtocol: 'http/json', metricsProtocol: 'http/json', serviceName: 'svc' },
    ],
    [
      'per-signal protocol',
      { env: { OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json', OTEL_EXPORTER_OTLP_METRICS_PROTOCOL: 'http/protobuf' } },
      { tracesProtocol: 'http/json', metricsProtocol: 'http/protobuf' },
    ],
    ['OTEL_SDK_DISABLED turns the environment off', { env: { OTEL_SDK_DISABLED: 'true', OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:1' } }, { tracesUrl: undefined }],
    ['metrics: false', { endpoint: 'http://c:1', metrics: false, env: {} }, { tracesUrl: 'http://c:1/v1/traces', metricsUrl: undefined }],
    [
      'run spans and bounds',
      { runSpans: { mode: 'sample', sampleEvery: 7 }, flushTimeoutMs: 500, maxQueue: 100, env: { OTEL_METRIC_EXPORT_INTERVAL: '2500' } },
      { runSpans: { mode: 'sample', sampleEvery: 7, windowMs: 1000 }, flushTimeoutMs: 500, exportTimeoutMs: 1000, maxQueue: 100, batchSize: 100, metricsIntervalMs: 2500 },
    ],
    ['prometheus binds loopback by default', { prometheus: { port: 0 }, env: {} }, { prometheus: { port: 0, host: '127.0.0.1' } }],
  ])('%s', (_what, opts, want) => {
    expect(resolveOtelConfig(opts)).toMatchObject(want);
  });

  it.each<[OtelSinkOptions, RegExp]>([
    [{ endpoint: 'localhost:4318', env: {} }, /must be http:\/\/ or https:\/\//],
    [{ endpoint: 'not a url', env: {} }, /is not a URL/],
    [{ env: { OTEL_EXPORTER_OTLP_PROTOCOL: 'grpc' } }, /grpc is not supported/],
    [{ env: { OTEL_EXPORTER_OTLP_PROTOCOL: 'thrift' } }, /is not one of http\/protobuf, http\/json/],
    [{ runSpans: { mode: 'every' as never }, env: {} }, /run span mode "every"/],
    [{ runSpans: { mode: 'sample', sampleEvery: 0 }, env: {} }, /run sample interval must be a positive integer/],
    [{ flushTimeoutMs: -1, env: {} }, /flush timeout/],
    [{ prometheus: { port: 70000 }, env: {} }, /Prometheus port/],
  ])('rejects %o with one line', (opts, re) => {
    expect(() => resolveOtelConfig(opts)).toThrow(re);
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

  it('no flag and no environment: no export', () => {
    expect(otelOptionsFrom(parse([]), {})).toBeUndefined();
    expect(otelOptionsFrom(parse([]), { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4318' })).toMatchObject({ runSpans: { mode: 'aggregate' } });
  });

  it.each([
    [['--run-spans', 'some']],
    [['--otlp-protocol', 'grpc']],
    [['--run-window', '0']],
    [['--prometheus', '99999']],
    [['--otlp-queue', 'lots']],
  ])('%o is a usage error', (argv) => {
    expect(() => parse(argv)).toThrow(CommanderError);
  });

  it('a bad URL is a usage CliError', () => {
    expect(() => otelOptionsFrom(parse(['--otlp', 'ftp://x']), {})).toThrow(expect.objectContaining({ code: 'usage' }));
  });

  it('summary line', () => {
    expect(
      otelSummaryLine({ spans: 12, exported: 10, dropped: 2, exportErrors: 1, aggregatedRuns: 5000, sampledOutRuns: 0, internalErrors: 0 }),
    ).toBe('otel: 12 spans, 10 exported, 2 dropped, 1 failed export requests; 5000 KVM_RUNs in aggregate spans');
  });
});
