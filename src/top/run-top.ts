/**
 * `kvm-trace top`'s lifecycle, one function like capture(): open the snapshot source (loads and attaches
 * the aggregate programs) → take a first snapshot → every interval take the next one and show it (the
 * interactive screen, a plain frame on a pipe, one `-1` snapshot, or `--log` lines) → on quit, SIGINT,
 * SIGTERM, --iterations or an error: restore the terminal and release the source in `finally`.
 *
 * The source is a parameter (src/top/snapshot.ts), so a richer kernel aggregate replaces today's without
 * changing anything here.
 */
import { untilAborted } from '../capture/stop-signal.js';
import type { BpfIds } from '../bpf/tracer.js';
import { TopModel, type TopView } from './model.js';
import { handleKey, initialUi, splitKeys, type UiState } from './keys.js';
import { renderTop } from './render.js';
import { IntervalLog, viewCsv, viewJson, type LogFormat } from './outputs.js';
import { Screen } from './screen.js';
import type { TopSource } from './snapshot.js';

export type TopMode = 'screen' | 'batch' | 'once' | 'log';

export interface TopOptions {
  openSource: () => TopSource;
  /** Seconds between snapshots (`--log INTERVAL` passes its interval here). */
  intervalS: number;
  mode: TopMode;
  /** Output format of `once` and `log` (text: a plain frame / kvm_stat -l lines). */
  format: LogFormat;
  /** Stop after this many intervals (batch and log modes). */
  iterations?: number;
  signal: AbortSignal;
  stdout: NodeJS.WritableStream;
  stdin?: NodeJS.ReadStream;
  /** Progress lines ("attached …"), to stderr. */
  log: (line: string) => void;
  verbose?: boolean;
  /** Called once attached (tests: the guest starts here). */
  onAttached?: (ids: BpfIds) => void;
}

export interface TopResult {
  ids: BpfIds;
  intervals: number;
  last: TopView | undefined;
}

const clock = (): string => new Date().toTimeString().slice(0, 8);
const sleep = (ms: number, signal: AbortSignal): Promise<void> =>
  new Promise((resolve) => {
    const t = setTimeout(done, ms);
    signal.addEventListener('abort', done, { once: true });
    function done(): void {
      clearTimeout(t);
      signal.removeEventListener('abort', done);
      resolve();
    }
  });

/** A plain frame (no escape codes) for pipes and `-1`: every row, the width of the terminal or 132. */
function plainFrame(view: TopView, cols: number): string {
  return renderTop(view, initialUi(), { cols, rows: Number.MAX_SAFE_INTEGER, color: false, clock: clock() }).lines.join('\n') + '\n';
}

export async function runTop(o: TopOptions): Promise<TopResult> {
  const started = Date.now();
  const source = o.openSource();
  const ids = source.ids();
  const model = new TopModel();
  let intervals = 0;
  let last: TopView | undefined;
  let screen: Screen | undefined;
  const ms = Math.max(50, Math.round(o.intervalS * 1000));
  const cols = (o.stdout as NodeJS.WriteStream).columns || 132;
  try {
    // The baseline first, then "attached": whatever happens after the line is in the first interval.
    last = model.update(source.snapshot());
    o.log(`attached: ${source.description} (${Date.now() - started} ms)`);
    if (o.verbose) o.log(`bpf ids: ${JSON.stringify(ids)}`);
    o.onAttached?.(ids);
    if (o.mode === 'screen') {
      last = await interactive(o, source, model, last, ms, (s) => (screen = s), () => intervals++);
      return { ids, intervals, last };
    }
    const logger = o.mode === 'log' ? new IntervalLog(o.format, clock) : undefined;
    while (!o.signal.aborted) {
      await sleep(ms, o.signal);
      if (o.signal.aborted && o.mode !== 'once') break;
      last = model.update(source.snapshot());
      intervals++;
      if (o.mode === 'once') {
        o.stdout.write(o.format === 'json' ? `${JSON.stringify(viewJson(last, source.description))}\n` : o.format === 'csv' ? viewCsv(last) : plainFrame(last, cols));
        break;
      }
      if (logger) o.stdout.write(logger.lines(last).map((l) => `${l}\n`).join(''));
      else o.stdout.write(`${plainFrame(last, cols)}\n`);
      if (o.iterations !== undefined && intervals >= o.iterations) break;
    }
    return { ids, intervals, last };
  } finally {
    (screen as Screen | undefined)?.stop();
    await source.close();
  }
}

/** The interactive screen: redraw every interval and on each key and resize; resolves on quit or abort. */
async function interactive(
  o: TopOptions,
  source: TopSource,
  model: TopModel,
  first: TopView,
  ms: number,
  setScreen: (s: Screen) => void,
  counted: () => void,
): Promise<TopView> {
  const screen = new Screen(o.stdout as NodeJS.WriteStream, o.stdin!);
  setScreen(screen);
  let ui: UiState = initialUi();
  let view = first;
  let shown = renderTop(view, ui, { ...screen.size(), color: true }).shown;
  const quit = new AbortController();
  let failure: unknown;
  const draw = (): void => {
    const r = renderTop(view, ui, { ...screen.size(), color: true, clock: clock() });
    shown = r.shown;
    screen.draw(r.lines);
  };
  const onKeys = (chunk: string): void => {
    for (const key of splitKeys(chunk)) {
      const r = handleKey(ui, key, shown);
      ui = r.state;
      if (r.action === 'quit') quit.abort();
      if (r.action === 'reset') {
        model.reset();
        ui = { ...ui, message: 'totals reset: they count from the last refresh' };
      }
    }
    if (!quit.signal.aborted) draw();
  };
  screen.start(onKeys, draw);
  draw();
  const timer = setInterval(() => {
    if (ui.paused) return;
    try {
      view = model.update(source.snapshot());
      counted();
      draw();
    } catch (err) {
      failure = err;
      quit.abort();
    }
  }, ms);
  try {
    await Promise.race([untilAborted(o.signal), untilAborted(quit.signal)]);
  } finally {
    clearInterval(timer);
    screen.stop();
  }
  if (failure) throw failure;
  return view;
}
