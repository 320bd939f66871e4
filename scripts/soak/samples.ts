/**
 * The soak's measurements: resident memory of a process (VmRSS from /proc), and what a series of
 * (exits, RSS) samples says — the maximum, and the slope after warm-up in MB per million exits (a leak
 * shows as a positive slope; a flat tracer stays near 0 whatever its level).
 *
 * The tracer is a garbage-collected process: its RSS is a sawtooth (measured here: 150 → 250 → 150 MB
 * every ~2 M exits of a full capture, as V8 lets the old generation grow before a major collection). A
 * straight fit through the teeth says more about where the run stopped than about a leak, so the slope is
 * fitted to the floor: the lowest sample of each window of at least FLOOR_WINDOW exits after warm-up —
 * what is still held after a collection, which is what grows when something leaks.
 */
import { readFileSync } from 'node:fs';

/** VmRSS of `pid` in MB, or undefined once it is gone. */
export function rssMB(pid: number): number | undefined {
  try {
    const m = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) / 1024 : undefined;
  } catch {
    return undefined;
  }
}

export interface Sample {
  /** Seconds since the guest started. */
  t: number;
  /** Exits traced so far. */
  exits: number;
  rssMB: number;
}

export interface RssVerdict {
  maxMB: number;
  /** The floor (lowest RSS) of the first and the last window after warm-up. */
  warmMB: number;
  endMB: number;
  /** Least-squares slope of the windows' floors over exits, MB per million exits (null: fewer than 3 windows). */
  slopeMBPerM: number | null;
  /** Windows the slope was fitted on. */
  fitted: number;
}

/** Exits per window: longer than one collection cycle of the sawtooth. */
export const FLOOR_WINDOW = 1_000_000;

/** Least-squares slope of y over x. */
function slope(xs: number[], ys: number[]): number | null {
  const n = xs.length;
  const mx = xs.reduce((a, b) => a + b, 0) / n;
  const my = ys.reduce((a, b) => a + b, 0) / n;
  let sxy = 0;
  let sxx = 0;
  for (let i = 0; i < n; i++) {
    sxy += (xs[i] - mx) * (ys[i] - my);
    sxx += (xs[i] - mx) ** 2;
  }
  return sxx > 0 ? sxy / sxx : null;
}

/** Max RSS, and the slope of the floor over the samples whose exits are past `warmupExits`. */
export function rssVerdict(samples: readonly Sample[], warmupExits: number, window = FLOOR_WINDOW): RssVerdict {
  const maxMB = Math.max(0, ...samples.map((s) => s.rssMB));
  const warm = samples.filter((s) => s.exits >= warmupExits);
  if (warm.length === 0) return { maxMB, warmMB: 0, endMB: 0, slopeMBPerM: null, fitted: 0 };
  const first = warm[0].exits;
  const span = warm[warm.length - 1].exits - first;
  // 3 to 12 windows, each at least `window` exits wide when the run is long enough.
  const w = Math.min(12, Math.max(3, Math.floor(span / window)));
  const width = span / w;
  const floors: Sample[] = [];
  for (const s of warm) {
    const i = width > 0 ? Math.min(w - 1, Math.floor((s.exits - first) / width)) : 0;
    if (!floors[i] || s.rssMB < floors[i].rssMB) floors[i] = s;
  }
  const pts = floors.filter(Boolean);
  const fit = pts.length >= 3 ? slope(pts.map((p) => p.exits / 1e6), pts.map((p) => p.rssMB)) : null;
  return { maxMB, warmMB: pts[0].rssMB, endMB: pts[pts.length - 1].rssMB, slopeMBPerM: fit, fitted: pts.length };
}
