/**
 * `--cpu-prof DIR`: runs every kvm-trace attach under `node --cpu-prof` (profiles kept in DIR) and reads the
 * profile back: where a target is missed, the report shows which functions of the tracer took the time.
 * A .cpuprofile is V8's sampling profile: nodes with a call frame and a hit count, one sample per interval;
 * a node's self time is its share of the samples.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { repoRoot } from './paths.js';

interface CpuProfile {
  nodes: Array<{ id: number; hitCount?: number; callFrame: { functionName: string; url: string; lineNumber: number } }>;
  samples?: number[];
}

export interface HotFunction {
  fn: string;
  where: string;
  self_pct: number;
}

/** The newest .cpuprofile in `dir` written after `sinceMs` (epoch ms), or null. */
export function newestProfile(dir: string, sinceMs: number): string | null {
  let best: { path: string; mtime: number } | null = null;
  for (const name of readdirSync(dir)) {
    if (!name.endsWith('.cpuprofile')) continue;
    const path = join(dir, name);
    const mtime = statSync(path).mtimeMs;
    if (mtime >= sinceMs && (!best || mtime > best.mtime)) best = { path, mtime };
  }
  return best?.path ?? null;
}

/** Functions by self time (share of all samples), highest first; "(idle)" and "(program)" included. */
export function hotFunctions(profilePath: string, top = 10): HotFunction[] {
  const p = JSON.parse(readFileSync(profilePath, 'utf8')) as CpuProfile;
  const hits = new Map<string, { fn: string; where: string; n: number }>();
  let total = 0;
  for (const node of p.nodes) {
    const n = node.hitCount ?? 0;
    if (n === 0) continue;
    total += n;
    const { functionName, url, lineNumber } = node.callFrame;
    const file = url.startsWith('file://') ? relative(repoRoot, new URL(url).pathname) : url;
    const where = file ? `${file}:${lineNumber + 1}` : '';
    const key = `${functionName}@${where}`;
    const e = hits.get(key) ?? { fn: functionName || '(anonymous)', where, n: 0 };
    e.n += n;
    hits.set(key, e);
  }
  return [...hits.values()]
    .sort((a, b) => b.n - a.n)
    .slice(0, top)
    .map((e) => ({ fn: e.fn, where: e.where, self_pct: Math.round((1000 * e.n) / Math.max(1, total)) / 10 }));
}
