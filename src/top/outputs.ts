/**
 * `top`'s non-interactive outputs, pure: one snapshot (`-1`) as JSON or CSV, and one line per interval
 * (`--log`) as text (kvm_stat -l style: a header, then rates), CSV or JSON lines. Exact numbers only: a
 * field the source does not measure is left out of JSON and empty in CSV, never 0.
 *
 * CSV and text logs have one column per exit reason seen so far; when a new reason appears, a new header
 * line precedes the line that first has it (the text log also repeats its header every 20 lines).
 */
import type { Counter, TopRow, TopView } from './model.js';
import { sumCounters } from './select.js';
import { fmtNs, fmtRate } from './format.js';

type Json = Record<string, unknown>;

const counterJson = (c: Counter | undefined): Json | undefined => (c ? { total: c.total, ...(c.rate !== undefined ? { per_s: round(c.rate), delta: c.delta } : {}) } : undefined);
const round = (n: number): number => Math.round(n * 100) / 100;

function defined(o: Json): Json {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined));
}

function rowJson(r: TopRow): Json {
  return defined({
    pid: r.pid,
    comm: r.comm || undefined,
    vm: r.vm,
    vcpu: r.vcpu,
    vcpu_label: r.vcpuLabel !== String(r.vcpu) && r.vcpu !== null ? r.vcpuLabel : undefined,
    level: r.level,
    exits: counterJson(r.exits),
    by_reason: r.byReason ? Object.fromEntries(Object.entries(r.byReason).map(([k, c]) => [k, counterJson(c)])) : undefined,
    ioctls: counterJson(r.ioctls),
    errors: counterJson(r.errors),
    hw_exits: counterJson(r.hwExits),
    run_p50_ns: r.runP50,
    run_p99_ns: r.runP99,
    handling_p99_ns: r.handlingP99,
  });
}

/** The whole view as one JSON object (`top -1 --json`). */
export function viewJson(v: TopView, source: string): Json {
  return {
    type: 'top',
    t_ns: v.t_ns,
    interval_s: round(v.interval_s),
    since_s: round(v.since_s),
    source,
    lost: v.lost,
    notes: v.notes,
    processes: v.processes,
    reasons: v.reasons,
    rows: v.rows.map(rowJson),
  };
}

const csvCell = (x: unknown): string => {
  if (x === undefined || x === null) return '';
  const s = String(x);
  return /[",\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
};

/** The view as CSV, one row per process / vCPU (`top -1 --csv`). */
export function viewCsv(v: TopView): string {
  const head = ['pid', 'comm', 'vm', 'vcpu', 'exits', 'exits_per_s', 'ioctls', 'ioctls_per_s', 'errors', 'errors_per_s', 'run_p50_ns', 'run_p99_ns', 'handling_p99_ns', ...v.reasons.flatMap((r) => [r, `${r}_per_s`])];
  const rate = (c: Counter | undefined) => (c?.rate === undefined ? undefined : round(c.rate));
  const lines = v.rows.map((r) =>
    [
      r.pid ?? '*', r.comm, r.vm, r.level === 'process' ? '' : r.vcpuLabel,
      r.exits?.total, rate(r.exits), r.ioctls?.total, rate(r.ioctls), r.errors?.total, rate(r.errors),
      r.runP50, r.runP99, r.handlingP99,
      ...v.reasons.flatMap((x) => (r.byReason ? [r.byReason[x]?.total ?? 0, rate(r.byReason[x]) ?? (r.exits?.rate !== undefined ? 0 : undefined)] : [undefined, undefined])),
    ].map(csvCell).join(','),
  );
  return [head.join(','), ...lines].join('\n') + '\n';
}

/** One interval summed over the traced set: the process rows (each sums its vCPUs), or the vCPU rows. */
export interface IntervalLine {
  t_ns: number;
  interval_s: number;
  exits: Counter;
  reasons: Record<string, Counter>;
  ioctls?: Counter;
  errors?: Counter;
  /** Only when one process row carries them. */
  runP50?: number;
  runP99?: number;
  handlingP99?: number;
}

export function intervalLine(v: TopView): IntervalLine {
  const heads = v.rows.some((r) => r.level === 'process') ? v.rows.filter((r) => r.level === 'process') : v.rows;
  const sum = (get: (r: TopRow) => Counter | undefined): Counter | undefined => (heads.some((r) => get(r)) ? sumCounters(heads.map(get)) : undefined);
  const reasons: Record<string, Counter> = {};
  for (const name of v.reasons) reasons[name] = sumCounters(heads.map((r) => r.byReason?.[name] ?? (r.byReason ? { total: 0, rate: 0, delta: 0 } : undefined)));
  const one = heads.length === 1 ? heads[0] : undefined;
  return {
    t_ns: v.t_ns,
    interval_s: v.interval_s,
    exits: sum((r) => r.exits) ?? { total: 0 },
    reasons,
    ioctls: sum((r) => r.ioctls),
    errors: sum((r) => r.errors),
    runP50: one?.runP50,
    runP99: one?.runP99,
    handlingP99: one?.handlingP99,
  };
}

export type LogFormat = 'text' | 'csv' | 'json';

/** Turns successive views into log lines; remembers the header it printed. */
export class IntervalLog {
  private reasons: string[] = [];
  private sinceHeader = 0;

  constructor(
    private readonly format: LogFormat,
    /** Wall-clock label for a line ("12:00:01"). */
    private readonly clock: () => string = () => new Date().toTimeString().slice(0, 8),
  ) {}

  /** The lines for this interval (a header first when needed). */
  lines(v: TopView): string[] {
    const l = intervalLine(v);
    const time = this.clock();
    if (this.format === 'json') {
      return [JSON.stringify(defined({
        type: 'top_interval', t_ns: l.t_ns, time, interval_s: round(l.interval_s),
        exits: counterJson(l.exits), by_reason: Object.fromEntries(Object.entries(l.reasons).map(([k, c]) => [k, counterJson(c)])),
        ioctls: counterJson(l.ioctls), errors: counterJson(l.errors), run_p50_ns: l.runP50, run_p99_ns: l.runP99, handling_p99_ns: l.handlingP99,
      }))];
    }
    const grown = v.reasons.some((r) => !this.reasons.includes(r));
    if (grown) this.reasons = [...this.reasons, ...v.reasons.filter((r) => !this.reasons.includes(r))];
    const out: string[] = [];
    const names = this.reasons;
    if (this.format === 'csv') {
      if (grown || this.sinceHeader === 0) out.push(['time', 'interval_s', 'exits', 'exits_per_s', ...names, 'ioctls', 'ioctls_per_s', 'errors', 'errors_per_s', 'run_p50_ns', 'run_p99_ns', 'handling_p99_ns'].join(','));
      const per = (c: Counter | undefined) => (c?.rate === undefined ? undefined : round(c.rate));
      out.push([time, round(l.interval_s), l.exits.delta, per(l.exits), ...names.map((n) => l.reasons[n]?.delta ?? 0), l.ioctls?.delta, per(l.ioctls), l.errors?.delta, per(l.errors), l.runP50, l.runP99, l.handlingP99].map(csvCell).join(','));
      this.sinceHeader++;
      return out;
    }
    const w = (s: string, n: number) => s.padStart(n);
    const cols = [['exits/s', 9], ...names.map((n) => [`${n}/s`, Math.max(8, n.length + 3)] as const), ['ioctls/s', 9], ['errors/s', 9], ['run_p50', 8], ['run_p99', 8], ['vmm_p99', 8]] as const;
    if (grown || this.sinceHeader % 20 === 0) out.push(`${'time'.padEnd(8)} ${cols.map(([t, n]) => w(t, n)).join(' ')}`);
    const vals = [fmtRate(l.exits.rate ?? NaN), ...names.map((n) => fmtRate(l.reasons[n]?.rate ?? 0)), l.ioctls ? fmtRate(l.ioctls.rate ?? NaN) : '-', l.errors ? fmtRate(l.errors.rate ?? NaN) : '-', fmtNs(l.runP50), fmtNs(l.runP99), fmtNs(l.handlingP99)];
    out.push(`${time.padEnd(8)} ${vals.map((s, i) => w(s, cols[i][1])).join(' ')}`);
    this.sinceHeader++;
    return out;
  }
}
