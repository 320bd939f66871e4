/**
 * `top`'s pure parts on synthetic snapshots: rates and totals from successive cumulative snapshots, reset,
 * interval percentiles from the kernel's histogram buckets, absent fields staying absent; the key handler
 * (sort, filters typed at a prompt, drill, pause, quit); row selection; the renderer on wide, narrow and
 * short terminals (no line wider than the terminal, no escape codes without color); the -1 / --log outputs.
 */
import { describe, expect, it } from 'vitest';
import { TopModel, intervalQuantile, type TopView } from '../src/top/model.js';
import { handleKey, initialUi, splitKeys, type UiState } from '../src/top/keys.js';
import { selectRows } from '../src/top/select.js';
import { renderTop } from '../src/top/render.js';
import { IntervalLog, viewCsv, viewJson } from '../src/top/outputs.js';
import type { TopEntity, TopSnapshot } from '../src/top/snapshot.js';
import { kernelBucket } from '../src/decode/histogram.js';
import { KT_AGG_BUCKETS } from '../src/bpf/event-layout.js';

const hist = (values: Record<number, number>): number[] => {
  const h = new Array<number>(KT_AGG_BUCKETS).fill(0);
  for (const [ns, n] of Object.entries(values)) h[kernelBucket(Number(ns))] += n;
  return h;
};

/** One process (pid 42, two vCPUs) after `k` seconds of a steady 1000 IO + 10 HLT exits/s on vCPU 0, 500 IO/s on vCPU 1. */
function snap(k: number, over: Partial<TopSnapshot> = {}): TopSnapshot {
  const v0 = { IO: 1000 * k, HLT: 10 * k };
  const v1 = { IO: 500 * k };
  const entities: TopEntity[] = [
    { pid: 42, vm: null, vcpu: null, comm: 'qemu', exits: { IO: 1500 * k, HLT: 10 * k }, ioctls: 1600 * k, errors: k, run_latency: { counts: hist({ 8000: 1500 * k, 90_000: 10 * k }), max_ns: 95_000 } },
    { pid: 42, vm: null, vcpu: 0, exits: v0 },
    { pid: 42, vm: null, vcpu: 1, exits: v1 },
  ];
  return { t_ns: 1e12 + k * 1e9, entities, processes: [{ pid: 42, comm: 'qemu', vms: 1, vcpus: [0, 1] }], lost: 0, notes: ['a note'], ...over };
}

function views(n: number): TopView[] {
  const m = new TopModel();
  return Array.from({ length: n }, (_, k) => m.update(snap(k)));
}

describe('model', () => {
  it('first view: totals, no rates; later views: rates over the interval, totals since start', () => {
    const [v0, v1, v2] = views(3);
    expect(v0.interval_s).toBe(0);
    expect(v0.rows[0].exits).toEqual({ total: 0 });
    expect(v2.interval_s).toBe(1);
    expect(v2.since_s).toBe(2);
    const p = v2.rows[0];
    expect(p).toMatchObject({ key: '42/*/-', level: 'process', comm: 'qemu', vcpuLabel: '-' });
    expect(p.exits).toEqual({ total: 3020, rate: 1510, delta: 1510 });
    expect(p.byReason!.HLT).toEqual({ total: 20, rate: 10, delta: 10 });
    expect(p.ioctls).toEqual({ total: 3200, rate: 1600, delta: 1600 });
    expect(p.errors).toEqual({ total: 2, rate: 1, delta: 1 });
    expect(v2.rows[1]).toMatchObject({ level: 'vcpu', vcpu: 0, comm: 'qemu', exits: { total: 2020, rate: 1010 } });
    // vCPU rows of this source carry no ioctl counts or latency: absent, not 0.
    expect(v2.rows[1].ioctls).toBeUndefined();
    expect(v2.rows[1].runP99).toBeUndefined();
    expect(v2.reasons).toEqual(['IO', 'HLT']);
    expect(v1.rows[2].exits?.rate).toBe(500);
  });

  it('percentiles come from the buckets that moved in the interval', () => {
    const [, , v2] = views(3);
    // 1500 calls near 8 µs, 10 near 90 µs in the interval: p50 in 8 µs's bucket, p99 too (10/1510 < 1 %).
    expect(v2.rows[0].runP50).toBeGreaterThanOrEqual(7168);
    expect(v2.rows[0].runP50).toBeLessThanOrEqual(8191);
    expect(v2.rows[0].runP99).toBe(v2.rows[0].runP50);
    expect(intervalQuantile({ counts: hist({ 8000: 5 }), max_ns: 8000 }, { counts: hist({ 8000: 5 }), max_ns: 8000 }, 0.5)).toBeUndefined();
    // Only the 90 µs bucket ([81920, 98303]) moved: its midpoint.
    expect(intervalQuantile({ counts: hist({ 8000: 5, 90_000: 5 }), max_ns: 95_000 }, { counts: hist({ 8000: 5 }), max_ns: 8000 }, 0.5)).toBe(90_112);
  });

  it('reset: totals restart from the last snapshot, rates unaffected', () => {
    const m = new TopModel();
    m.update(snap(0));
    m.update(snap(1));
    m.reset();
    const v = m.update(snap(3));
    expect(v.rows[0].exits).toEqual({ total: 3020, rate: 1510, delta: 3020 });
    expect(v.since_s).toBe(2);
  });
});

describe('keys', () => {
  const shown = views(2)[1].rows;
  const press = (s: UiState, keys: string[]): { state: UiState; actions: string[] } => {
    const actions: string[] = [];
    for (const k of keys) {
      const r = handleKey(s, k, shown);
      s = r.state;
      actions.push(r.action);
    }
    return { state: s, actions };
  };

  it.each<[string, string[], Partial<UiState>, string?]>([
    ['s cycles the sort key', ['s'], { sort: 'ioctls', desc: true }],
    ['S goes back', ['S'], { sort: 'vcpu', desc: false }],
    ['i inverts', ['i'], { desc: false }],
    ['space pauses and resumes', [' '], { paused: true }],
    ['a pid typed at the prompt', ['p', '4', '2', '\r'], { filter: { pid: 42 }, prompt: null }],
    ['a comm, with backspace', ['c', 'q', 'x', '\x7f', 'e', '\r'], { filter: { comm: 'qe' } }],
    ['an exit reason', ['e', 'H', 'L', 'T', '\r'], { filter: { reason: 'HLT' } }],
    ['Esc cancels the prompt', ['v', '3', '\x1b'], { filter: {}, prompt: null }],
    ['a bad vCPU number is refused with a message', ['v', 'x', '\r'], { filter: {}, message: "vcpu must be a number, got 'x'" }],
    ['an empty prompt clears that filter', ['p', '4', '2', '\r', 'p', '\x7f', '\x7f', '\r'], { filter: {} }],
    ['Enter drills into the selected row’s group', ['\x1b[B', '\r'], { drill: '42/*', selected: 0 }],
    ['Esc comes back up', ['\r', '\x1b'], { drill: null }],
    ['x clears filters and drill', ['p', '4', '2', '\r', '\r', 'x'], { filter: {}, drill: null }],
    ['z hides idle rows', ['z'], { hideZero: true }],
    ['h shows help, any key closes it', ['h', 's'], { help: false, sort: 'exits' }],
    ['q quits', ['q'], {}, 'quit'],
    ['Ctrl-C quits, even at a prompt', ['p', '\x03'], {}, 'quit'],
    ['r resets', ['r'], {}, 'reset'],
  ])('%s', (_l, keys, want, action) => {
    const r = press(initialUi(), keys);
    expect(r.state).toMatchObject(want);
    if (action) expect(r.actions.at(-1)).toBe(action);
  });

  it('splits raw chunks into keys, keeping escape sequences whole', () => {
    expect(splitKeys('s\x1b[Bq')).toEqual(['s', '\x1b[B', 'q']);
    expect(splitKeys('\x1bOA\r')).toEqual(['\x1bOA', '\r']);
    expect(splitKeys('\x1b')).toEqual(['\x1b']);
  });
});

describe('row selection', () => {
  const v = views(3)[2];
  const pick = (ui: Partial<UiState>): string[] => selectRows(v, initialUi(ui)).map((r) => r.key);

  it.each<[string, Partial<UiState>, string[]]>([
    ['grouped, vCPUs by exit rate', {}, ['42/*/-', '42/*/0', '42/*/1']],
    ['ascending', { desc: false }, ['42/*/-', '42/*/1', '42/*/0']],
    ['by vCPU id', { sort: 'vcpu', desc: true }, ['42/*/-', '42/*/1', '42/*/0']],
    ['vCPU filter keeps the group head', { filter: { vcpu: 1 } }, ['42/*/-', '42/*/1']],
    ['a vCPU that does not exist', { filter: { vcpu: 7 } }, []],
    ['pid filter', { filter: { pid: 43 } }, []],
    ['comm filter (substring)', { filter: { comm: 'qem' } }, ['42/*/-', '42/*/0', '42/*/1']],
    ['comm filter, no match', { filter: { comm: 'firecracker' } }, []],
    ['reason filter sorts by that reason', { filter: { reason: 'hlt' } }, ['42/*/-', '42/*/0', '42/*/1']],
    ['reason filter with idle rows hidden', { filter: { reason: 'hlt' }, hideZero: true }, ['42/*/-', '42/*/0']],
    ['drilled into another group', { drill: '7/*' }, []],
  ])('%s', (_l, ui, keys) => {
    expect(pick(ui)).toEqual(keys);
  });
});

describe('render', () => {
  const v = views(3)[2];
  it('wide: title, totals, notes, header, one line per row; plain text without color', () => {
    const { lines, shown } = renderTop(v, initialUi(), { cols: 140, rows: 40, color: false, clock: '12:00:00' });
    expect(lines[0]).toBe('kvm-trace top  12:00:00  rates over 1.0s  totals over 2.0s');
    expect(lines[1]).toMatch(/^exits 1\.5k\/s  ioctls 1\.6k\/s  errors 1\.0\/s  KVM_RUN p50 7\.\d+µs p99 7\.\d+µs  lost 0  processes 1$/);
    expect(lines.join('\n')).not.toMatch(/\x1b/);
    const head = lines.findIndex((l) => l.includes('EXITS/s'));
    expect(lines[head].split(/\s+/).filter(Boolean)).toEqual(['PID', 'VCPU', 'COMM', 'EXITS/s', 'IO/s', 'HLT/s', 'IOCTL/s', 'ERR/s', 'RUN', 'p50', 'RUN', 'p99', 'VMM', 'p99', 'EXITS']);
    expect(lines[head + 1].split(/\s+/).filter(Boolean)).toEqual(['42', '-', 'qemu', '1.5k', '1.5k', '10', '1.6k', '1.0', expect.stringMatching(/µs$/), expect.stringMatching(/µs$/), '-', '3020']);
    expect(lines[head + 2].split(/\s+/).filter(Boolean)).toEqual(['42', '0', 'qemu', '1.0k', '1.0k', '10', '-', '-', '-', '-', '-', '2020']);
    expect(shown).toHaveLength(3);
  });

  it.each([20, 32, 50, 80])('%d columns: nothing wider, identity and exit rate kept as long as they fit', (cols) => {
    const { lines } = renderTop(v, initialUi(), { cols, rows: 30, color: true });
    // Visible width: escape codes take no columns.
    for (const l of lines) expect(l.replace(/\x1b\[[0-9;?]*[A-Za-z]/g, '').length).toBeLessThanOrEqual(cols);
    const header = lines.find((l) => l.includes('PID'))!;
    if (cols >= 32) expect(header).toMatch(/PID\s+VCPU.*EXITS\/s/);
  });

  it('short terminal: the selection stays on screen', () => {
    const { lines } = renderTop(v, initialUi({ selected: 2 }), { cols: 80, rows: 8, color: false });
    expect(lines.length).toBeLessThanOrEqual(8);
    expect(lines.at(-1)).toMatch(/^\s+42\s+1\s/);
  });

  it('help replaces the rows; a prompt shows in the last line', () => {
    expect(renderTop(v, initialUi({ help: true }), { cols: 100, rows: 40, color: false }).lines.join('\n')).toContain('drill into its VM');
    expect(renderTop(v, initialUi({ prompt: { field: 'pid', text: '4' } }), { cols: 100, rows: 40, color: false }).lines.at(-1)).toBe('pid: 4_');
  });
});

describe('outputs', () => {
  const [, , v2] = views(3);
  it('-1 --json: exact numbers; absent fields left out', () => {
    const j = viewJson(v2, 'test') as { rows: Array<Record<string, unknown>> };
    expect(j.rows[0]).toMatchObject({ pid: 42, level: 'process', exits: { total: 3020, per_s: 1510, delta: 1510 }, ioctls: { total: 3200 } });
    expect(j.rows[1]).not.toHaveProperty('ioctls');
    expect(j.rows[1]).not.toHaveProperty('run_p99_ns');
  });

  it('-1 --csv: a header and one line per row, empty cells for what is not measured', () => {
    const lines = viewCsv(v2).trim().split('\n');
    expect(lines[0]).toBe('pid,comm,vm,vcpu,exits,exits_per_s,ioctls,ioctls_per_s,errors,errors_per_s,run_p50_ns,run_p99_ns,handling_p99_ns,IO,IO_per_s,HLT,HLT_per_s');
    expect(lines[2]).toBe('42,qemu,,0,2020,1010,,,,,,,,2000,1000,20,10');
  });

  it('--log: deltas per interval add up to the totals; a new reason brings a new header', () => {
    const m = new TopModel();
    const log = new IntervalLog('csv', () => 'T');
    m.update(snap(0));
    const out: string[] = [];
    for (let k = 1; k <= 3; k++) out.push(...log.lines(m.update(snap(k))));
    // An exit reason appears in the fourth interval.
    const s4 = snap(4);
    s4.entities[0].exits!.MMIO = 7;
    out.push(...log.lines(m.update(s4)));
    expect(out[0]).toBe('time,interval_s,exits,exits_per_s,IO,HLT,ioctls,ioctls_per_s,errors,errors_per_s,run_p50_ns,run_p99_ns,handling_p99_ns');
    expect(out.filter((l) => l.startsWith('time,'))).toHaveLength(2);
    const rows = out.filter((l) => l.startsWith('T,')).map((l) => l.split(','));
    expect(rows.map((r) => Number(r[4])).reduce((a, b) => a + b, 0)).toBe(6000); // IO total over 4 s
    expect(out.at(-2)).toContain('MMIO');
    const text = new IntervalLog('text', () => '12:00:00');
    const t = text.lines(views(2)[1]);
    expect(t[0]).toMatch(/^time\s+exits\/s\s+IO\/s\s+HLT\/s\s+ioctls\/s/);
    expect(t[1]).toMatch(/^12:00:00\s+1\.5k\s+1\.5k\s+10\s+1\.6k\s+1\.0\s/);
  });
});
