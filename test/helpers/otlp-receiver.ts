/**
 * A small real OTLP/HTTP receiver for tests: a node:http server on 127.0.0.1 that accepts
 * POST /v1/traces and /v1/metrics with protobuf (application/x-protobuf) or JSON (application/json) bodies,
 * gzip or not, decodes them into one normalized shape, and answers like a collector would.
 *
 * The protobuf side is a minimal wire-format reader plus the field numbers of the OTLP messages we need
 * (opentelemetry-proto: collector/trace/v1, collector/metrics/v1, trace/v1, metrics/v1, common/v1,
 * resource/v1). The OTel JS packages only ship encoders and response decoders, so request decoding lives
 * here; the JSON side accepts both the spec's hex ids and int64-as-string and plain numbers.
 */
import { createServer } from 'node:http';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { gunzipSync } from 'node:zlib';

export type Encoding = 'protobuf' | 'json' | 'grpc';
export type AttrValue = string | number | boolean | null | AttrValue[] | { [key: string]: AttrValue };
export type Attrs = Record<string, AttrValue>;

export interface ReceivedSpan {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  name: string;
  kind: number;
  startNs: bigint;
  endNs: bigint;
  attributes: Attrs;
  events: { name: string; timeNs: bigint; attributes: Attrs }[];
  links: { traceId: string; spanId: string }[];
  status: { code: number; message?: string };
  resource: Attrs;
  scope: string;
  encoding: Encoding;
}

export interface ReceivedPoint {
  attributes: Attrs;
  timeNs: bigint;
  /** Sum / gauge value. */
  value?: number;
  /** Histogram fields. */
  count?: number;
  sum?: number;
  bucketCounts?: number[];
  bounds?: number[];
}

export interface ReceivedMetric {
  name: string;
  unit: string;
  description: string;
  kind: 'sum' | 'gauge' | 'histogram' | 'other';
  monotonic?: boolean;
  points: ReceivedPoint[];
  resource: Attrs;
  scope: string;
  encoding: Encoding;
  /** Order of the request it came in (metrics are cumulative: the latest request has the totals). */
  request: number;
}

export interface ReceivedRequest {
  path: string;
  contentType: string;
  encoding: Encoding;
  bytes: number;
  status: number;
  /** Request headers (HTTP) or call metadata (gRPC), lower-case names. */
  headers: Record<string, string>;
}

export interface OtlpReceiver {
  /** Base endpoint, e.g. http://127.0.0.1:43567 (append /v1/traces yourself if you need it). */
  url: string;
  port: number;
  spans: ReceivedSpan[];
  metrics: ReceivedMetric[];
  requests: ReceivedRequest[];
  /** Malformed requests (decode errors), so a test can assert there were none. */
  errors: string[];
  /** The latest exported value of each metric (cumulative temporality). */
  latestMetrics(): Map<string, ReceivedMetric>;
  /** Resolves when `pred()` holds, polling every 10 ms; rejects after `timeoutMs`. */
  waitFor(pred: () => boolean, timeoutMs?: number): Promise<void>;
  close(): Promise<void>;
}

export interface ReceiverOptions {
  /** HTTP status to answer with (default 200); a function can vary it per request. */
  status?: number | ((path: string, n: number) => number);
}

export async function startOtlpReceiver(opts: ReceiverOptions = {}): Promise<OtlpReceiver> {
  const spans: ReceivedSpan[] = [];
  const metrics: ReceivedMetric[] = [];
  const requests: ReceivedRequest[] = [];
  const errors: string[] = [];
  let metricRequests = 0;

  const server: Server = createServer((req, res) => {
    readBody(req).then(
      (body) => handle(req, res, body),
      (err) => {
        errors.push(String(err));
        res.statusCode = 400;
        res.end();
      },
    );
  });

  function handle(req: IncomingMessage, res: ServerResponse, raw: Buffer): void {
    const path = (req.url ?? '').split('?')[0];
    const contentType = String(req.headers['content-type'] ?? '');
    const encoding: Encoding = contentType.includes('json') ? 'json' : 'protobuf';
    const n = requests.length;
    const status = typeof opts.status === 'function' ? opts.status(path, n) : (opts.status ?? 200);
    const headers = Object.fromEntries(Object.entries(req.headers).map(([k, v]) => [k, String(v)]));
    requests.push({ path, contentType, encoding, bytes: raw.length, status, headers });
    if (status === 200) {
      try {
        const body = req.headers['content-encoding'] === 'gzip' ? gunzipSync(raw) : raw;
        if (path === '/v1/traces') {
          spans.push(...(encoding === 'json' ? jsonSpans(JSON.parse(body.toString('utf8'))) : protoSpans(body)));
        } else if (path === '/v1/metrics') {
          const r = metricRequests++;
          const got = encoding === 'json' ? jsonMetrics(JSON.parse(body.toString('utf8'))) : protoMetrics(body);
          for (const m of got) metrics.push({ ...m, request: r });
        } else {
          res.statusCode = 404;
          res.end();
          return;
        }
      } catch (err) {
        errors.push(`${path}: ${(err as Error).message}`);
        res.statusCode = 400;
        res.end();
        return;
      }
    }
    res.statusCode = status;
    // An empty Export*ServiceResponse: zero bytes in protobuf, {} in JSON.
    res.setHeader('content-type', encoding === 'json' ? 'application/json' : 'application/x-protobuf');
    res.end(encoding === 'json' ? '{}' : '');
  }

  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    spans,
    metrics,
    requests,
    errors,
    latestMetrics: () => latestMetrics(metrics),
    waitFor: (pred, timeoutMs) => waitFor('OTLP receiver', pred, timeoutMs),
    close() {
      return new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
    },
  };
}

/** The latest exported value of each metric (cumulative temporality: the latest request has the totals). */
export function latestMetrics(metrics: ReceivedMetric[]): Map<string, ReceivedMetric> {
  const out = new Map<string, ReceivedMetric>();
  for (const m of metrics) {
    const prev = out.get(m.name);
    if (!prev || m.request >= prev.request) out.set(m.name, m);
  }
  return out;
}

/** Resolves when `pred()` holds, polling every 10 ms; rejects after `timeoutMs`. */
export async function waitFor(who: string, pred: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!pred()) {
    if (Date.now() > deadline) throw new Error(`${who}: condition not met within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

function readBody(req: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

// ---------------------------------------------------------------- protobuf wire format

type Field = bigint | Uint8Array;
type Message = Map<number, Field[]>;

/** Split a message into its fields: varints as bigint, everything else (LEN, I64, I32) as raw bytes. */
export function decodeMessage(buf: Uint8Array): Message {
  const out: Message = new Map();
  let pos = 0;
  const varint = (): bigint => {
    let result = 0n;
    let shift = 0n;
    for (;;) {
      if (pos >= buf.length) throw new Error('truncated varint');
      const b = buf[pos++];
      result |= BigInt(b & 0x7f) << shift;
      if ((b & 0x80) === 0) return result;
      shift += 7n;
    }
  };
  while (pos < buf.length) {
    const tag = Number(varint());
    const field = tag >>> 3;
    const wire = tag & 7;
    let value: Field;
    if (wire === 0) value = varint();
    else if (wire === 1) value = buf.subarray(pos, (pos += 8));
    else if (wire === 5) value = buf.subarray(pos, (pos += 4));
    else if (wire === 2) {
      const len = Number(varint());
      value = buf.subarray(pos, (pos += len));
    } else throw new Error(`unsupported wire type ${wire}`);
    if (pos > buf.length) throw new Error('truncated field');
    const list = out.get(field);
    if (list) list.push(value);
    else out.set(field, [value]);
  }
  return out;
}

const bytesOf = (m: Message, f: number): Uint8Array | undefined => {
  const v = m.get(f)?.[0];
  return v instanceof Uint8Array ? v : undefined;
};
const messages = (m: Message, f: number): Message[] =>
  (m.get(f) ?? []).filter((v): v is Uint8Array => v instanceof Uint8Array).map(decodeMessage);
const message = (m: Message, f: number): Message => decodeMessage(bytesOf(m, f) ?? new Uint8Array());
const str = (m: Message, f: number): string => Buffer.from(bytesOf(m, f) ?? []).toString('utf8');
const hex = (m: Message, f: number): string => Buffer.from(bytesOf(m, f) ?? []).toString('hex');
const uvarint = (m: Message, f: number): bigint => {
  const v = m.get(f)?.[0];
  return typeof v === 'bigint' ? v : 0n;
};
const view = (b: Uint8Array) => new DataView(b.buffer, b.byteOffset, b.byteLength);
const fixed64 = (m: Message, f: number): bigint => {
  const b = bytesOf(m, f);
  return b && b.length === 8 ? view(b).getBigUint64(0, true) : 0n;
};
const double = (m: Message, f: number): number | undefined => {
  const b = bytesOf(m, f);
  return b && b.length === 8 ? view(b).getFloat64(0, true) : undefined;
};
/** A repeated 8-byte field, packed (one LEN field) or not. */
const repeated8 = (m: Message, f: number, read: (d: DataView, off: number) => number): number[] => {
  const out: number[] = [];
  for (const v of m.get(f) ?? []) {
    if (!(v instanceof Uint8Array)) continue;
    for (let off = 0; off + 8 <= v.length; off += 8) out.push(read(view(v), off));
  }
  return out;
};

function protoAnyValue(m: Message): AttrValue {
  if (m.has(1)) return str(m, 1);
  if (m.has(2)) return uvarint(m, 2) !== 0n;
  if (m.has(3)) return Number(BigInt.asIntN(64, uvarint(m, 3)));
  if (m.has(4)) return double(m, 4) ?? 0;
  if (m.has(5)) return messages(message(m, 5), 1).map(protoAnyValue);
  if (m.has(6)) return protoAttrs(messages(message(m, 6), 1));
  if (m.has(7)) return hex(m, 7);
  return null;
}

function protoAttrs(kvs: Message[]): Attrs {
  const out: Attrs = {};
  for (const kv of kvs) out[str(kv, 1)] = protoAnyValue(message(kv, 2));
  return out;
}

export function protoSpans(body: Uint8Array): ReceivedSpan[] {
  const out: ReceivedSpan[] = [];
  for (const rs of messages(decodeMessage(body), 1)) {
    const resource = protoAttrs(messages(message(rs, 1), 1));
    for (const ss of messages(rs, 2)) {
      const scope = str(message(ss, 1), 1);
      for (const s of messages(ss, 2)) {
        const status = message(s, 15);
        const parent = hex(s, 4);
        out.push({
          traceId: hex(s, 1),
          spanId: hex(s, 2),
          parentSpanId: parent || undefined,
          name: str(s, 5),
          kind: Number(uvarint(s, 6)),
          startNs: fixed64(s, 7),
          endNs: fixed64(s, 8),
          attributes: protoAttrs(messages(s, 9)),
          events: messages(s, 11).map((e) => ({ timeNs: fixed64(e, 1), name: str(e, 2), attributes: protoAttrs(messages(e, 3)) })),
          links: messages(s, 13).map((l) => ({ traceId: hex(l, 1), spanId: hex(l, 2) })),
          status: { code: Number(uvarint(status, 3)), message: str(status, 2) || undefined },
          resource,
          scope,
          encoding: 'protobuf',
        });
      }
    }
  }
  return out;
}

function protoNumberPoint(p: Message): ReceivedPoint {
  const asInt = bytesOf(p, 6);
  return {
    attributes: protoAttrs(messages(p, 7)),
    timeNs: fixed64(p, 3),
    value: asInt && asInt.length === 8 ? Number(view(asInt).getBigInt64(0, true)) : (double(p, 4) ?? 0),
  };
}

export function protoMetrics(body: Uint8Array): Omit<ReceivedMetric, 'request'>[] {
  const out: Omit<ReceivedMetric, 'request'>[] = [];
  for (const rm of messages(decodeMessage(body), 1)) {
    const resource = protoAttrs(messages(message(rm, 1), 1));
    for (const sm of messages(rm, 2)) {
      const scope = str(message(sm, 1), 1);
      for (const m of messages(sm, 2)) {
        const base = { name: str(m, 1), description: str(m, 2), unit: str(m, 3), resource, scope, encoding: 'protobuf' as const };
        if (m.has(7)) {
          const sum = message(m, 7);
          out.push({ ...base, kind: 'sum', monotonic: uvarint(sum, 3) !== 0n, points: messages(sum, 1).map(protoNumberPoint) });
        } else if (m.has(5)) {
          out.push({ ...base, kind: 'gauge', points: messages(message(m, 5), 1).map(protoNumberPoint) });
        } else if (m.has(9)) {
          const points = messages(message(m, 9), 1).map((p) => ({
            attributes: protoAttrs(messages(p, 9)),
            timeNs: fixed64(p, 3),
            count: Number(fixed64(p, 4)),
            sum: double(p, 5),
            bucketCounts: repeated8(p, 6, (d, o) => Number(d.getBigUint64(o, true))),
            bounds: repeated8(p, 7, (d, o) => d.getFloat64(o, true)),
          }));
          out.push({ ...base, kind: 'histogram', points });
        } else {
          out.push({ ...base, kind: 'other', points: [] });
        }
      }
    }
  }
  return out;
}

// ---------------------------------------------------------------- OTLP/JSON

/* eslint-disable @typescript-eslint/no-explicit-any */
type Json = any;

const big = (v: Json): bigint => (v === undefined || v === null ? 0n : BigInt(v));
const num = (v: Json): number => (v === undefined || v === null ? 0 : Number(v));
/** OTLP/JSON ids are hex strings; accept base64 too (some encoders), normalizing to hex. */
const jsonId = (v: Json): string => {
  if (typeof v !== 'string' || v === '') return '';
  return /^[0-9a-f]+$/i.test(v) && (v.length === 32 || v.length === 16) ? v.toLowerCase() : Buffer.from(v, 'base64').toString('hex');
};

function jsonAnyValue(v: Json): AttrValue {
  if (!v) return null;
  if ('stringValue' in v) return v.stringValue;
  if ('boolValue' in v) return Boolean(v.boolValue);
  if ('intValue' in v) return num(v.intValue);
  if ('doubleValue' in v) return num(v.doubleValue);
  if ('arrayValue' in v) return (v.arrayValue?.values ?? []).map(jsonAnyValue);
  if ('kvlistValue' in v) return jsonAttrs(v.kvlistValue?.values);
  if ('bytesValue' in v) return Buffer.from(v.bytesValue, 'base64').toString('hex');
  return null;
}

function jsonAttrs(kvs: Json[] | undefined): Attrs {
  const out: Attrs = {};
  for (const kv of kvs ?? []) out[kv.key] = jsonAnyValue(kv.value);
  return out;
}

export function jsonSpans(body: Json): ReceivedSpan[] {
  const out: ReceivedSpan[] = [];
  for (const rs of body.resourceSpans ?? []) {
    const resource = jsonAttrs(rs.resource?.attributes);
    for (const ss of rs.scopeSpans ?? []) {
      for (const s of ss.spans ?? []) {
        out.push({
          traceId: jsonId(s.traceId),
          spanId: jsonId(s.spanId),
          parentSpanId: jsonId(s.parentSpanId) || undefined,
          name: s.name,
          kind: num(s.kind),
          startNs: big(s.startTimeUnixNano),
          endNs: big(s.endTimeUnixNano),
          attributes: jsonAttrs(s.attributes),
          events: (s.events ?? []).map((e: Json) => ({ name: e.name, timeNs: big(e.timeUnixNano), attributes: jsonAttrs(e.attributes) })),
          links: (s.links ?? []).map((l: Json) => ({ traceId: jsonId(l.traceId), spanId: jsonId(l.spanId) })),
          status: { code: num(s.status?.code), message: s.status?.message || undefined },
          resource,
          scope: ss.scope?.name ?? '',
          encoding: 'json',
        });
      }
    }
  }
  return out;
}

function jsonNumberPoint(p: Json): ReceivedPoint {
  return {
    attributes: jsonAttrs(p.attributes),
    timeNs: big(p.timeUnixNano),
    value: p.asInt !== undefined ? num(p.asInt) : num(p.asDouble),
  };
}

export function jsonMetrics(body: Json): Omit<ReceivedMetric, 'request'>[] {
  const out: Omit<ReceivedMetric, 'request'>[] = [];
  for (const rm of body.resourceMetrics ?? []) {
    const resource = jsonAttrs(rm.resource?.attributes);
    for (const sm of rm.scopeMetrics ?? []) {
      for (const m of sm.metrics ?? []) {
        const base = { name: m.name, description: m.description ?? '', unit: m.unit ?? '', resource, scope: sm.scope?.name ?? '', encoding: 'json' as const };
        if (m.sum) {
          out.push({ ...base, kind: 'sum', monotonic: Boolean(m.sum.isMonotonic), points: (m.sum.dataPoints ?? []).map(jsonNumberPoint) });
        } else if (m.gauge) {
          out.push({ ...base, kind: 'gauge', points: (m.gauge.dataPoints ?? []).map(jsonNumberPoint) });
        } else if (m.histogram) {
          const points = (m.histogram.dataPoints ?? []).map((p: Json) => ({
            attributes: jsonAttrs(p.attributes),
            timeNs: big(p.timeUnixNano),
            count: num(p.count),
            sum: p.sum === undefined ? undefined : num(p.sum),
            bucketCounts: (p.bucketCounts ?? []).map(num),
            bounds: (p.explicitBounds ?? []).map(num),
          }));
          out.push({ ...base, kind: 'histogram', points });
        } else {
          out.push({ ...base, kind: 'other', points: [] });
        }
      }
    }
  }
  return out;
}
