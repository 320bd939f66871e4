/**
 * Which rows `top` shows, in which order, pure: the UI's filters (pid, comm, vCPU, exit reason), the
 * drilled-into VM, "hide idle rows", and the sort. Rows stay grouped: a process (or VM) row, then its vCPU
 * rows; groups are ordered by their own row's value, vCPUs inside a group by theirs.
 */
import type { Counter, TopRow, TopView } from './model.js';
import type { SortKey, UiState } from './keys.js';

/** The exit reasons the reason filter lets through (all of them without one). */
export function shownReasons(view: TopView, ui: UiState): string[] {
  const f = ui.filter.reason?.toLowerCase();
  return f ? view.reasons.filter((r) => r.toLowerCase().includes(f)) : view.reasons;
}

/** A row's exits restricted to `reasons` when a reason filter is set. */
export function exitsOf(row: TopRow, ui: UiState, reasons: readonly string[]): Counter | undefined {
  if (!ui.filter.reason || !row.byReason) return row.exits;
  const c = sumCounters(reasons.map((r) => row.byReason![r]));
  // None of the selected reasons on this row: 0, once there is an interval to rate over.
  if (c.rate === undefined && row.exits?.rate !== undefined) return { total: c.total, rate: 0, delta: 0 };
  return c;
}

/** The sum of counters (missing ones count as 0); rate and delta only when every present one has them. */
export function sumCounters(cs: ReadonlyArray<Counter | undefined>): Counter {
  const present = cs.filter((c): c is Counter => c !== undefined);
  const out: Counter = { total: present.reduce((n, c) => n + c.total, 0) };
  if (present.length && present.every((c) => c.rate !== undefined)) {
    out.rate = present.reduce((n, c) => n + c.rate!, 0);
    out.delta = present.reduce((n, c) => n + (c.delta ?? 0), 0);
  }
  return out;
}

const rateOr = (c: Counter | undefined): number => (c ? c.rate ?? c.total : -Infinity);

function sortValue(row: TopRow, key: SortKey, ui: UiState, reasons: readonly string[]): number {
  switch (key) {
    case 'exits':
      return rateOr(exitsOf(row, ui, reasons));
    case 'ioctls':
      return rateOr(row.ioctls);
    case 'errors':
      return rateOr(row.errors);
    case 'run_p99':
      return row.runP99 ?? -Infinity;
    case 'handling_p99':
      return row.handlingP99 ?? -Infinity;
    case 'pid':
      return row.pid ?? -1;
    case 'vcpu':
      return row.vcpu ?? -1;
  }
}

function active(row: TopRow, ui: UiState, reasons: readonly string[]): boolean {
  const e = exitsOf(row, ui, reasons);
  return (e?.total ?? 0) > 0 || (!ui.filter.reason && (row.ioctls?.total ?? 0) > 0);
}

/** Inside the drilled-into group ("pid/vm", or "pid/*" for a whole process): the process row and that VM's vCPUs. */
function inDrill(r: TopRow, drill: string): boolean {
  const [pid, vm] = drill.split('/');
  if (String(r.pid ?? '*') !== pid) return false;
  return vm === '*' || r.level === 'process' || String(r.vm ?? '*') === vm;
}

/** The rows to show, top to bottom. */
export function selectRows(view: TopView, ui: UiState): TopRow[] {
  const reasons = shownReasons(view, ui);
  const f = ui.filter;
  const groups = new Map<string, { head: TopRow | undefined; vcpus: TopRow[] }>();
  for (const r of view.rows) {
    // A process row heads its vCPU rows, whatever VM they belong to.
    const g = String(r.pid ?? '*');
    if (ui.drill !== null && !inDrill(r, ui.drill)) continue;
    if (f.pid !== undefined && r.pid !== f.pid) continue;
    if (f.comm !== undefined && !r.comm.includes(f.comm)) continue;
    let grp = groups.get(g);
    if (!grp) groups.set(g, (grp = { head: undefined, vcpus: [] }));
    if (r.level === 'process') grp.head = r;
    else if (f.vcpu === undefined || r.vcpu === f.vcpu) grp.vcpus.push(r);
  }
  const dir = ui.desc ? -1 : 1;
  const cmp = (a: TopRow, b: TopRow): number => {
    const d = sortValue(a, ui.sort, ui, reasons) - sortValue(b, ui.sort, ui, reasons);
    return (d === 0 || Number.isNaN(d) ? 0 : d > 0 ? 1 : -1) * dir || (a.pid ?? -1) - (b.pid ?? -1) || (a.vcpu ?? -1) - (b.vcpu ?? -1);
  };
  const keep = (r: TopRow): boolean => !ui.hideZero || active(r, ui, reasons);
  const out: TopRow[] = [];
  const ordered = [...groups.values()].filter((g) => g.head || g.vcpus.length);
  ordered.sort((a, b) => cmp((a.head ?? a.vcpus[0])!, (b.head ?? b.vcpus[0])!));
  for (const g of ordered) {
    const vcpus = g.vcpus.filter(keep).sort(cmp);
    // With a vCPU filter a group shows only when one of its vCPUs matched.
    if (f.vcpu !== undefined && vcpus.length === 0) continue;
    if (g.head && keep(g.head)) out.push(g.head);
    out.push(...vcpus);
  }
  return out;
}
