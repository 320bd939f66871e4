/**
 * A small real OTLP/gRPC receiver for tests: a @grpc/grpc-js server on 127.0.0.1 implementing the collector's
 * TraceService and MetricsService from the OTLP protocol definitions (./otlp-proto, loaded with
 * @grpc/proto-loader), so requests are decoded by protobufjs — independently of the hand-written protobuf
 * reader of the HTTP receiver. Decoded requests use the proto3 JSON field names (camelCase), which is the
 * OTLP/JSON shape, so they are normalized by the same functions as OTLP/JSON bodies.
 *
 * Like a collector it can be down, slow or restarted: `status` answers calls with a gRPC error code, `delayMs`
 * holds answers back, `stop()` takes the server off its port and `restart()` binds the same port again.
 */
import { join } from 'node:path';
import { Server, ServerCredentials, status as grpcStatus, loadPackageDefinition } from '@grpc/grpc-js';
import type { sendUnaryData, ServerUnaryCall, ServiceDefinition } from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { jsonMetrics, jsonSpans, latestMetrics, waitFor, type OtlpReceiver, type ReceivedMetric, type ReceivedRequest, type ReceivedSpan } from './otlp-receiver.js';

const PROTO_DIR = join(import.meta.dirname, 'otlp-proto');
const TRACE_PROTO = 'opentelemetry/proto/collector/trace/v1/trace_service.proto';
const METRICS_PROTO = 'opentelemetry/proto/collector/metrics/v1/metrics_service.proto';

export type GrpcSignal = 'traces' | 'metrics';

export interface GrpcReceiverOptions {
  /** gRPC status to answer with (0 = OK, default); a function can vary it per call (n counts all calls). */
  status?: number | ((signal: GrpcSignal, n: number) => number);
  /** Answer after this many ms (default 0). */
  delayMs?: number | ((signal: GrpcSignal, n: number) => number);
  /** Bind this port (default: any free one). */
  port?: number;
}

export interface OtlpGrpcReceiver extends OtlpReceiver {
  /** Take the server off its port (connections are cut, as when a collector process dies). */
  stop(): Promise<void>;
  /** Bind the same port again, keeping what was received so far. */
  restart(): Promise<void>;
}

/** Service definitions from the .proto files; loaded once. */
function services(): { trace: ServiceDefinition; metrics: ServiceDefinition } {
  const def = loadSync([TRACE_PROTO, METRICS_PROTO], {
    includeDirs: [PROTO_DIR],
    keepCase: false,
    longs: String,
    enums: Number,
    bytes: String,
    defaults: false,
    oneofs: false,
  });
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  const pkg = loadPackageDefinition(def) as any;
  return {
    trace: pkg.opentelemetry.proto.collector.trace.v1.TraceService.service,
    metrics: pkg.opentelemetry.proto.collector.metrics.v1.MetricsService.service,
  };
}

export async function startOtlpGrpcReceiver(opts: GrpcReceiverOptions = {}): Promise<OtlpGrpcReceiver> {
  const defs = services();
  const spans: ReceivedSpan[] = [];
  const metrics: ReceivedMetric[] = [];
  const requests: ReceivedRequest[] = [];
  const errors: string[] = [];
  let metricRequests = 0;
  let server: Server | undefined;
  let port = opts.port ?? 0;

  const handler = (signal: GrpcSignal) => (call: ServerUnaryCall<unknown, unknown>, done: sendUnaryData<unknown>) => {
    const n = requests.length;
    const code = typeof opts.status === 'function' ? opts.status(signal, n) : (opts.status ?? grpcStatus.OK);
    const delay = typeof opts.delayMs === 'function' ? opts.delayMs(signal, n) : (opts.delayMs ?? 0);
    const path = signal === 'traces' ? '/opentelemetry.proto.collector.trace.v1.TraceService/Export' : '/opentelemetry.proto.collector.metrics.v1.MetricsService/Export';
    const headers = Object.fromEntries(Object.entries(call.metadata.getMap()).map(([k, v]) => [k, String(v)]));
    requests.push({ path, contentType: 'application/grpc', encoding: 'grpc', bytes: 0, status: code, headers });
    const answer = (): void => {
      if (code !== grpcStatus.OK) {
        done({ code, details: `test receiver answers ${grpcStatus[code]}` });
        return;
      }
      try {
        if (signal === 'traces') {
          spans.push(...jsonSpans(call.request).map((s) => ({ ...s, encoding: 'grpc' as const })));
        } else {
          const r = metricRequests++;
          for (const m of jsonMetrics(call.request)) metrics.push({ ...m, encoding: 'grpc', request: r });
        }
      } catch (err) {
        errors.push(`${signal}: ${(err as Error).message}`);
      }
      done(null, {});
    };
    if (delay > 0) setTimeout(answer, delay);
    else answer();
  };

  async function bind(): Promise<void> {
    const s = new Server();
    s.addService(defs.trace, { Export: handler('traces') });
    s.addService(defs.metrics, { Export: handler('metrics') });
    port = await new Promise<number>((resolve, reject) => {
      s.bindAsync(`127.0.0.1:${port}`, ServerCredentials.createInsecure(), (err, bound) => (err ? reject(err) : resolve(bound)));
    });
    server = s;
  }

  async function stop(): Promise<void> {
    const s = server;
    server = undefined;
    if (!s) return;
    s.forceShutdown();
  }

  await bind();
  return {
    get url() {
      return `http://127.0.0.1:${port}`;
    },
    get port() {
      return port;
    },
    spans,
    metrics,
    requests,
    errors,
    latestMetrics: () => latestMetrics(metrics),
    waitFor: (pred, timeoutMs) => waitFor('OTLP/gRPC receiver', pred, timeoutMs),
    stop,
    restart: bind,
    close: stop,
  };
}
