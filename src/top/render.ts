/**
 * `top`'s screen as lines, pure: (view, UI state, terminal size) → lines of at most `cols` visible
 * characters, plus the rows shown (so Enter can drill into the selected one). Escape codes (reverse video
 * for the column header and the selected row) only when `color` is set: a pipe gets plain text.
 *
 * Narrow terminals: columns carry a priority and the least important go first (per-reason columns from the
 * rarest reason up, then COMM, totals, p50, …) until the row fits; what still does not fit is cut at the
 * edge. Short terminals: the row list scrolls to keep the selected row visible.
 */
import type { Counter, TopRow, TopView } from './model.js';
import type { UiState } from './keys.js';
import { exitsOf, selectRows, shownReasons } from './select.js';
import { fmtCount, fmtNs, fmtRate } from './format.js';

export interface RenderOptions {
  cols: number;
  rows: number;
  /** Escape codes for emphasis (TTY only). */
  color: boolean;
  /** Wall-clock label for the title ("12:00:01"). */
  clock?: string;
}

interface Col {
  title: string;
  width: number;
  /** Lower goes first when the terminal is too narrow. */
  prio: number;
  left?: boolean;
  cell: (r: TopRow) => string;
}

const REV = '\x1b[7m';
const BOLD = '\x1b[1m';
const OFF = '\x1b[0m';

/** Cut to `n` columns (every character here is one column wide: names are sanitised to printable ASCII). */
const fit = (s: string, n: number): string => (s.length > n ? s.slice(0, n) : s);
const clean = (s: string): string => s.replace(/[^\x20-\x7e]/g, '?');
const rateCell = (c: Counter | undefined): string => (c === undefined ? '-' : c.rate === undefined ? '-' : fmtRate(c.rate));

function columns(ui: UiState, reasons: string[], rows: TopRow[]): Col[] {
  const cols: Col[] = [
    { title: 'PID', width: 7, prio: 100, cell: (r) => (r.pid === null ? '*' : String(r.pid)) },
  ];
  if (rows.some((r) => r.vm !== null)) cols.push({ title: 'VM', width: 3, prio: 40, cell: (r) => (r.vm === null ? '-' : String(r.vm)) });
  cols.push(
    { title: 'VCPU', width: 4, prio: 100, cell: (r) => r.vcpuLabel },
    { title: 'COMM', width: 15, prio: 30, left: true, cell: (r) => clean(r.comm || (r.pid === null ? '(all traced)' : '')) },
    { title: ui.filter.reason ? 'SEL/s' : 'EXITS/s', width: 8, prio: 100, cell: (r) => rateCell(exitsOf(r, ui, reasons)) },
  );
  // Per-reason rates: every reason when drilled in, else the most frequent first (rarer ones drop first).
  reasons.forEach((name, i) => {
    const cell = (r: TopRow): string => {
      const c = r.byReason?.[name];
      if (c) return rateCell(c);
      // A row that counts exits but had none of this reason: 0 (once there is an interval to rate over).
      return r.byReason && r.exits?.rate !== undefined ? '0' : '-';
    };
    cols.push({ title: `${fit(name, 9)}/s`, width: Math.max(7, Math.min(name.length, 9) + 2), prio: 60 - Math.min(i, 19), cell });
  });
  // In-kernel exits: only where the kernel emits kvm:kvm_exit and the hooks are on (--hw-exits).
  if (rows.some((r) => r.hwExits !== undefined)) cols.push({ title: 'HWEXIT/s', width: 8, prio: 50, cell: (r) => rateCell(r.hwExits) });
  cols.push(
    { title: 'IOCTL/s', width: 8, prio: 90, cell: (r) => rateCell(r.ioctls) },
    { title: 'ERR/s', width: 6, prio: 85, cell: (r) => rateCell(r.errors) },
    { title: 'RUN p50', width: 7, prio: 35, cell: (r) => fmtNs(r.runP50) },
    { title: 'RUN p99', width: 7, prio: 80, cell: (r) => fmtNs(r.runP99) },
    { title: 'VMM p99', width: 7, prio: 45, cell: (r) => fmtNs(r.handlingP99) },
    { title: 'EXITS', width: 8, prio: 25, cell: (r) => { const e = exitsOf(r, ui, reasons); return e ? fmtCount(e.total) : '-'; } },
  );
  return cols;
}

/** Drop the least important columns until a row fits `width`. */
function fitColumns(cols: Col[], width: number): Col[] {
  const keep = [...cols];
  const used = (): number => keep.reduce((n, c) => n + c.width + 1, -1);
  while (used() > width && keep.length > 2) {
    let worst = 0;
    for (let i = 1; i < keep.length; i++) if (keep[i].prio < keep[worst].prio) worst = i;
    if (keep[worst].prio >= 100) break; // the identity and the exit rate stay; the line is cut instead
    keep.splice(worst, 1);
  }
  return keep;
}

const line = (cols: Col[], cells: string[]): string => cells.map((c, i) => (cols[i].left ? c.padEnd(cols[i].width) : c.padStart(cols[i].width))).join(' ').trimEnd();

function titleLines(view: TopView | undefined, ui: UiState, o: RenderOptions): string[] {
  const parts = ['kvm-trace top'];
  if (o.clock) parts.push(o.clock);
  if (view) parts.push(view.interval_s > 0 ? `rates over ${view.interval_s.toFixed(1)}s` : 'first refresh pending', `totals over ${view.since_s.toFixed(1)}s`);
  if (ui.paused) parts.push('[PAUSED]');
  const out = [parts.join('  ')];
  if (!view) return [...out, 'attaching…'];
  const heads = view.rows.filter((r) => r.level === 'process');
  const sum = (get: (r: TopRow) => Counter | undefined): string => {
    const cs = heads.map(get).filter((c): c is Counter => c !== undefined);
    if (!cs.length || cs.some((c) => c.rate === undefined)) return '-';
    return fmtRate(cs.reduce((n, c) => n + (c.rate ?? 0), 0));
  };
  const one = heads.length === 1 ? heads[0] : undefined;
  out.push(
    `exits ${sum((r) => r.exits)}/s  ioctls ${sum((r) => r.ioctls)}/s  errors ${sum((r) => r.errors)}/s` +
      (one ? `  KVM_RUN p50 ${fmtNs(one.runP50)} p99 ${fmtNs(one.runP99)}` : '') +
      `  lost ${view.lost}  processes ${view.processes.length}`,
  );
  const f = ui.filter;
  const filters = [f.pid !== undefined ? `pid=${f.pid}` : '', f.comm ? `comm=${f.comm}` : '', f.vcpu !== undefined ? `vcpu=${f.vcpu}` : '', f.reason ? `reason=${f.reason}` : ''].filter(Boolean);
  out.push(
    `sort ${ui.sort}${ui.desc ? ' ↓' : ' ↑'}` + (filters.length ? `  filter ${filters.join(' ')}` : '') + (ui.drill ? `  drilled into ${drillName(ui.drill)}` : '') + (ui.hideZero ? '  idle rows hidden' : '') + '  (h: help)',
  );
  return out;
}

function drillName(g: string): string {
  const [pid, vm] = g.split('/');
  return vm === '*' ? `pid ${pid}` : `pid ${pid} VM ${vm}`;
}

export const HELP = [
  'kvm-trace top: keys',
  '  q, Ctrl-C   quit                     space   pause / resume',
  '  s / S       next / previous sort     i       invert the sort order',
  '  p  c  v  e  filter by pid, comm, vCPU, exit reason (type, Enter; empty clears)',
  '  x           clear filters and drill  z       hide rows without activity',
  '  ↑ ↓ (k j)   select a row             Enter   drill into its VM (every exit reason)',
  '  Esc, u      back up                  r       reset totals',
  '  h, ?        this help (any key closes it)',
  '',
  'Columns: rates per second over the last interval; RUN = KVM_RUN latency, VMM = VMM handling time',
  '(KVM_RUN return → the same vCPU\'s next KVM_RUN), p50/p99 of the last interval; HWEXIT = in-kernel',
  'exits (--hw-exits, where kvm:kvm_exit fires); EXITS = total since start or reset; "-" = not measured.',
];

/** The whole screen; `shown` is the rows listed, top to bottom (for selection and drilling). */
export function renderTop(view: TopView | undefined, ui: UiState, o: RenderOptions): { lines: string[]; shown: TopRow[] } {
  const width = Math.max(1, o.cols);
  const out: string[] = titleLines(view, ui, o).map((l) => fit(l, width));
  if (ui.help) {
    out.push('', ...HELP.map((l) => fit(l, width)));
    return { lines: out.slice(0, Math.max(1, o.rows)), shown: [] };
  }
  const notes = view?.notes ?? [];
  for (const n of notes.slice(0, 2)) out.push(fit(`note: ${n}`, width));
  if (notes.length > 2) out.push(fit(`note: (${notes.length - 2} more with --json)`, width));
  const shown = view ? selectRows(view, ui) : [];
  const reasons = view ? shownReasons(view, ui).slice(0, ui.drill ? 40 : 8) : [];
  const cols = fitColumns(columns(ui, reasons, shown), width);
  out.push('');
  const header = fit(line(cols, cols.map((c) => c.title)), width);
  out.push(o.color ? `${REV}${header.padEnd(width)}${OFF}` : header);
  const footer = ui.prompt ? `${ui.prompt.field}: ${ui.prompt.text}_` : ui.message ?? (view && shown.length === 0 ? 'no rows match (x clears filters)' : '');
  const room = Math.max(0, o.rows - out.length - (footer ? 1 : 0));
  const sel = Math.min(ui.selected, Math.max(0, shown.length - 1));
  const first = Math.max(0, Math.min(sel - room + 1, shown.length - room));
  const visible = shown.slice(first, first + room);
  visible.forEach((r, i) => {
    const text = fit(line(cols, cols.map((c) => fit(c.cell(r), c.width))), width);
    const selected = o.color && first + i === sel && !ui.prompt;
    out.push(selected ? `${BOLD}${REV}${text.padEnd(width)}${OFF}` : r.level === 'process' && o.color ? `${BOLD}${text}${OFF}` : text);
  });
  if (footer) out.push(fit(footer, width));
  return { lines: out, shown };
}
