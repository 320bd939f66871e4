/**
 * Every metric, label, span name and span/resource/event attribute that a dashboard in dashboards/ queries is
 * one kvm-trace really emits. One real export feeds both sides of the comparison: the same record stream goes
 * to a real OTLP/HTTP receiver and to the real Prometheus endpoint; the PromQL names are looked up in the
 * scrape (and traced back to the OTLP metric they translate from), the TraceQL names in the received spans.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MonotonicToEpoch } from '../src/export/otel/clock.js';
import { createOtelSink } from '../src/export/otel/sink.js';
import { startOtlpReceiver, type OtlpReceiver, type ReceivedMetric, type ReceivedSpan } from './helpers/otlp-receiver.js';
import { syntheticCapture } from './helpers/otel-records.js';
import { parsePromText, type PromSample } from './helpers/prom-text.js';

const DASHBOARD_DIR = join(dirname(fileURLToPath(import.meta.url)), '..', 'dashboards');
/** Labels Prometheus itself attaches to every scraped series (target labels), and the histogram bucket label. */
const TARGET_LABELS = new Set(['job', 'instance', 'le']);
const PROMQL_WORDS = new Set(['by', 'without', 'on', 'ignoring', 'group_left', 'group_right', 'bool', 'and', 'or', 'unless', 'offset', 'inf', 'nan']);

interface PromQuery {
  where: string;
  metrics: Set<string>;
  labels: Set<string>;
  /** label = literal value (from = and != matchers) */
  literals: { label: string; value: string }[];
}

interface TraceQuery {
  where: string;
  spanAttrs: Set<string>;
  resourceAttrs: Set<string>;
  eventAttrs: Set<string>;
  spanNames: Set<string>;
  eventNames: Set<string>;
  literals: { scope: 'span' | 'resource'; attr: string; value: string }[];
}

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

/** Replace Grafana variables by what they expand to by default (the textbox default for $service). */
function expand(q: string, dash: { templating?: { list?: { name: string; type: string; query?: Json }[] } }): string {
  const vars = new Map<string, string>([
    ['__rate_interval', '1m'],
    ['__range', '5m'],
    ['__interval', '1m'],
  ]);
  for (const v of dash.templating?.list ?? []) vars.set(v.name, v.type === 'textbox' ? String(v.query) : '.*');
  return q.replace(/\$\{?(\w+)\}?/g, (m, name: string) => vars.get(name) ?? m);
}

export function parsePromQL(expr: string, where: string): PromQuery {
  const q: PromQuery = { where, metrics: new Set(), labels: new Set(), literals: [] };
  const lv = /^\s*label_values\(\s*([a-zA-Z_:][\w:]*)\s*,\s*(\w+)\s*\)\s*$/.exec(expr);
  if (lv) {
    q.metrics.add(lv[1]);
    q.labels.add(lv[2]);
    return q;
  }
  let rest = expr;
  rest = rest.replace(/([a-zA-Z_:][\w:]*)?\s*\{([^}]*)\}/g, (_m, metric: string | undefined, matchers: string) => {
    for (const m of matchers.matchAll(/(\w+)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"/g)) {
      q.labels.add(m[1]);
      if (m[2] === '=' || m[2] === '!=') q.literals.push({ label: m[1], value: m[3] });
    }
    return ` ${metric ?? ''} `;
  });
  rest = rest.replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)/g, (_m, _kw, labels: string) => {
    for (const l of labels.split(',').map((s) => s.trim()).filter(Boolean)) q.labels.add(l);
    return ' ';
  });
  rest = rest.replace(/"(?:[^"\\]|\\.)*"/g, ' ').replace(/\[[^\]]*\]/g, ' ');
  for (const m of rest.matchAll(/(?<![\w.:])([a-zA-Z_:][\w:]*)(?![\w:])(?!\s*\()/g)) {
    if (!PROMQL_WORDS.has(m[1].toLowerCase())) q.metrics.add(m[1]);
  }
  return q;
}

export function parseTraceQL(query: string, where: string): TraceQuery {
  const q: TraceQuery = {
    where,
    spanAttrs: new Set(),
    resourceAttrs: new Set(),
    eventAttrs: new Set(),
    spanNames: new Set(),
    eventNames: new Set(),
    literals: [],
  };
  const strip = query.replace(/"(?:[^"\\]|\\.)*"/g, '""');
  for (const m of strip.matchAll(/(?<![\w.:])(span|resource|event)\.([a-zA-Z_][\w.]*)/g)) {
    (m[1] === 'span' ? q.spanAttrs : m[1] === 'resource' ? q.resourceAttrs : q.eventAttrs).add(m[2]);
  }
  for (const m of query.matchAll(/(?<![\w.:])name\s*=\s*"([^"]*)"/g)) q.spanNames.add(m[1]);
  for (const m of query.matchAll(/event:name\s*=\s*"([^"]*)"/g)) q.eventNames.add(m[1]);
  for (const m of query.matchAll(/(?<![\w.:])(span|resource)\.([a-zA-Z_][\w.]*)\s*=\s*"([^"]*)"/g)) {
    q.literals.push({ scope: m[1] as 'span' | 'resource', attr: m[2], value: m[3] });
  }
  return q;
}

function loadDashboards(): { file: string; json: Json & object }[] {
  return readdirSync(DASHBOARD_DIR)
    .filter((f) => f.endsWith('.json'))
    .map((file) => ({ file, json: JSON.parse(readFileSync(join(DASHBOARD_DIR, file), 'utf8')) }));
}

/** All PromQL and TraceQL a dashboard runs: panel targets and template variable queries. */
function queriesOf(file: string, dash: Record<string, Json>) {
  const prom: PromQuery[] = [];
  const traceql: TraceQuery[] = [];
  const d = dash as Parameters<typeof expand>[1];
  const visitPanels = (panels: Json[] | undefined) => {
    for (const p of (panels ?? []) as Record<string, Json>[]) {
      visitPanels(p.panels as Json[] | undefined);
      for (const t of (p.targets ?? []) as Record<string, Json>[]) {
        const ds = ((t.datasource ?? p.datasource) as { type?: string } | undefined)?.type;
        const where = `${file}: "${p.title}"`;
        if (t.queryType === 'traceql' || ds === 'tempo') traceql.push(parseTraceQL(expand(String(t.query), d), where));
        else if (typeof t.expr === 'string') prom.push(parsePromQL(expand(t.expr, d), where));
        else throw new Error(`${where}: a target with neither PromQL nor TraceQL`);
      }
    }
  };
  visitPanels(dash.panels as Json[]);
  for (const v of ((dash.templating as { list?: Record<string, Json>[] })?.list ?? [])) {
    if (v.type !== 'query') continue;
    const text = typeof v.query === 'string' ? v.query : String((v.query as { query?: string })?.query ?? v.definition);
    prom.push(parsePromQL(text, `${file}: variable $${v.name}`));
  }
  return { prom, traceql };
}

/** The Prometheus series names an OTLP metric turns into (dots → _, counters + _total, histogram suffixes). */
function promNamesOf(m: ReceivedMetric): string[] {
  const base = m.name.replace(/[^a-zA-Z0-9_:]/g, '_');
  if (m.kind === 'histogram') return [`${base}_bucket`, `${base}_sum`, `${base}_count`];
  if (m.kind === 'sum' && m.monotonic) return [base.endsWith('_total') ? base : `${base}_total`];
  return [base];
}

describe('dashboards query only what kvm-trace emits', () => {
  let rx: OtlpReceiver;
  let samples: PromSample[];
  let spans: ReceivedSpan[];
  let otlpMetrics: ReceivedMetric[];

  beforeAll(async () => {
    rx = await startOtlpReceiver();
    const cap = syntheticCapture({ startNs: MonotonicToEpoch.nowNs() - 100_000_000, vcpus: 2, runsPerVcpu: 200 });
    const sink = createOtelSink({ endpoint: rx.url, prometheus: { port: 0 } });
    const { prometheusUrl } = await sink.start();
    for (const r of cap.records) sink.write(r);
    samples = parsePromText(await (await fetch(prometheusUrl!)).text());
    await sink.close();
    spans = rx.spans;
    otlpMetrics = [...rx.latestMetrics().values()];
    expect(rx.errors).toEqual([]);
    expect(spans.length).toBeGreaterThan(0);
    expect(otlpMetrics.length).toBeGreaterThan(0);
  });
  afterAll(async () => {
    await rx.close();
  });

  const dashboards = loadDashboards();

  it('there is at least one dashboard, with Prometheus and Tempo queries', () => {
    expect(dashboards.length).toBeGreaterThan(0);
    const all = dashboards.map((d) => queriesOf(d.file, d.json as Record<string, Json>));
    expect(all.some((q) => q.prom.length > 0)).toBe(true);
    expect(all.some((q) => q.traceql.length > 0)).toBe(true);
  });

  it('the query parsers find names, so an unknown one would be caught', () => {
    const p = parsePromQL(
      'histogram_quantile(0.99, sum by (le, kvm_ioctl_name) (rate(kvm_nope_bucket{instance=~".*", error_type!="EINTR"}[1m]))) / on (x) foo_total',
      't',
    );
    expect([...p.metrics].sort()).toEqual(['foo_total', 'kvm_nope_bucket']);
    expect([...p.labels].sort()).toEqual(['error_type', 'instance', 'kvm_ioctl_name', 'le', 'x']);
    expect(p.literals).toEqual([{ label: 'error_type', value: 'EINTR' }]);
    const t = parseTraceQL('{ resource.service.name = "x" && name = "kvm.vm" && span.kvm.nope != nil && event:name = "e" } | select(event.kvm.buffer.what)', 't');
    expect([...t.spanAttrs]).toEqual(['kvm.nope']);
    expect([...t.resourceAttrs]).toEqual(['service.name']);
    expect([...t.eventAttrs]).toEqual(['kvm.buffer.what']);
    expect([...t.spanNames]).toEqual(['kvm.vm']);
    expect([...t.eventNames]).toEqual(['e']);
  });

  it.each(dashboards.map((d) => [d.file, d.json] as const))('%s: PromQL metrics and labels exist in a real scrape and OTLP export', (file, json) => {
    const { prom } = queriesOf(file, json as Record<string, Json>);
    const scraped = new Map<string, PromSample[]>();
    for (const s of samples) scraped.set(s.name, [...(scraped.get(s.name) ?? []), s]);
    const fromOtlp = new Map<string, string>();
    for (const m of otlpMetrics) for (const n of promNamesOf(m)) fromOtlp.set(n, m.name);

    for (const q of prom) {
      expect(q.metrics.size, `${q.where}: no metric`).toBeGreaterThan(0);
      const labelsHere = new Set<string>(TARGET_LABELS);
      for (const metric of q.metrics) {
        expect(scraped.has(metric), `${q.where}: ${metric} is not in the Prometheus scrape`).toBe(true);
        expect(fromOtlp.has(metric), `${q.where}: ${metric} does not come from an OTLP metric`).toBe(true);
        for (const s of scraped.get(metric)!) for (const l of Object.keys(s.labels)) labelsHere.add(l);
      }
      for (const label of q.labels) expect(labelsHere.has(label), `${q.where}: label ${label} is not on ${[...q.metrics]}`).toBe(true);
      for (const { label, value } of q.literals) {
        if (TARGET_LABELS.has(label)) continue;
        // PromQL reads an absent label as "" (error_type!="" selects the failures).
        const values = new Set([...q.metrics].flatMap((m) => scraped.get(m)!.map((s) => s.labels[label] ?? '')));
        expect(values.has(value), `${q.where}: ${label}="${value}" never emitted`).toBe(true);
      }
    }
  });

  it.each(dashboards.map((d) => [d.file, d.json] as const))('%s: TraceQL names and attributes exist in a real span export', (file, json) => {
    const { traceql } = queriesOf(file, json as Record<string, Json>);
    const spanAttrs = new Set(spans.flatMap((s) => Object.keys(s.attributes)));
    const resourceAttrs = new Set(spans.flatMap((s) => Object.keys(s.resource)));
    const eventAttrs = new Set(spans.flatMap((s) => s.events.flatMap((e) => Object.keys(e.attributes))));
    const spanNames = new Set(spans.map((s) => s.name));
    const eventNames = new Set(spans.flatMap((s) => s.events.map((e) => e.name)));
    for (const q of traceql) {
      for (const a of q.spanAttrs) expect(spanAttrs.has(a), `${q.where}: span.${a} never emitted`).toBe(true);
      for (const a of q.resourceAttrs) expect(resourceAttrs.has(a), `${q.where}: resource.${a} never emitted`).toBe(true);
      for (const a of q.eventAttrs) expect(eventAttrs.has(a), `${q.where}: event.${a} never emitted`).toBe(true);
      for (const n of q.spanNames) expect(spanNames.has(n), `${q.where}: no span named ${n}`).toBe(true);
      for (const n of q.eventNames) expect(eventNames.has(n), `${q.where}: no event named ${n}`).toBe(true);
      for (const { scope, attr, value } of q.literals) {
        const seen = new Set(spans.map((s) => String((scope === 'span' ? s.attributes : s.resource)[attr])));
        expect(seen.has(value), `${q.where}: ${scope}.${attr} = "${value}" never emitted`).toBe(true);
      }
    }
  });

  it.each(dashboards.map((d) => [d.file, d.json] as const))('%s: panels are well-formed', (_file, json) => {
    const d = json as { uid?: string; title?: string; panels: { id: number; type: string; datasource?: unknown; targets?: unknown[] }[] };
    expect(d.uid).toBeTruthy();
    expect(d.title).toBeTruthy();
    const ids = d.panels.map((p) => p.id);
    expect(new Set(ids).size).toBe(ids.length);
    for (const p of d.panels.filter((x) => x.type !== 'row')) {
      expect(p.datasource, `panel ${p.id}`).toBeTruthy();
      expect(p.targets?.length, `panel ${p.id}`).toBeGreaterThan(0);
    }
  });
});
