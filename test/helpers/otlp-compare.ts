/**
 * Canonical forms of what an OTLP receiver got, so that two exports can be compared: spans by their place in
 * the tree (the chain of names from the root, since ids are random) and metrics by attribute set.
 */
import type { AttrValue, ReceivedMetric, ReceivedSpan } from './otlp-receiver.js';

export interface SpanShapeOptions {
  /** Attribute keys whose values are not compared (only their presence). */
  ignoreValues?: (key: string) => boolean;
  /** Compare start/end times (default true). */
  times?: boolean;
}

const sortObj = (o: Record<string, AttrValue>, ignore?: (k: string) => boolean): Record<string, AttrValue> =>
  Object.fromEntries(
    Object.keys(o)
      .sort()
      .map((k) => [k, ignore?.(k) ? '*' : o[k]]),
  );

/** The chain of span names from the root down to `s`, e.g. "kvm.vm/kvm.vcpu/KVM_SET_REGS". */
export function spanPath(s: ReceivedSpan, byId: Map<string, ReceivedSpan>): string {
  const names: string[] = [];
  for (let cur: ReceivedSpan | undefined = s; cur; cur = cur.parentSpanId ? byId.get(cur.parentSpanId) : undefined) names.unshift(cur.name);
  return names.join('/');
}

/** One JSON line per span: tree path, kind, status, attributes, events, links (by path), resource; sorted. */
export function spanShapes(spans: ReceivedSpan[], o: SpanShapeOptions = {}): string[] {
  const byId = new Map(spans.map((s) => [s.spanId, s]));
  return spans
    .map((s) =>
      JSON.stringify({
        path: spanPath(s, byId),
        kind: s.kind,
        status: s.status,
        ...(o.times === false ? {} : { start: String(s.startNs), end: String(s.endNs) }),
        attributes: sortObj(s.attributes, o.ignoreValues),
        events: s.events.map((e) => ({ name: e.name, ...(o.times === false ? {} : { t: String(e.timeNs) }), attributes: sortObj(e.attributes, o.ignoreValues) })),
        links: s.links.map((l) => (byId.has(l.spanId) ? spanPath(byId.get(l.spanId)!, byId) : 'missing')),
        resource: sortObj(s.resource, (k) => k === 'host.id' || !!o.ignoreValues?.(k)),
      }),
    )
    .sort();
}

/** name -> attribute set (JSON) -> value (sum/gauge value, or histogram count/sum/buckets). */
export function metricValues(latest: Map<string, ReceivedMetric>, o: { dropAttributes?: string[]; histogramSums?: boolean } = {}): Record<string, Record<string, unknown>> {
  const out: Record<string, Record<string, unknown>> = {};
  for (const [name, m] of [...latest].sort(([a], [b]) => a.localeCompare(b))) {
    const series: Record<string, unknown> = {};
    for (const p of m.points) {
      const attrs = Object.fromEntries(Object.entries(p.attributes).filter(([k]) => !o.dropAttributes?.includes(k)));
      const key = JSON.stringify(sortObj(attrs));
      const v =
        m.kind === 'histogram'
          ? { count: p.count, ...(o.histogramSums === false ? {} : { sum: p.sum, buckets: p.bucketCounts, bounds: p.bounds }) }
          : p.value;
      // Points that differ only in a dropped attribute add up (e.g. the same exits of two runs' pids).
      const prev = series[key];
      series[key] = typeof prev === 'number' && typeof v === 'number' ? prev + v : (prev ?? v);
    }
    out[name] = { kind: m.kind, unit: m.unit, monotonic: m.monotonic, series };
  }
  return out;
}
