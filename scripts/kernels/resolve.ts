/**
 * Which package stands for a pinned default kernel. The defaults (cache.ts DEFAULT_KERNELS) are exact
 * packages, and Debian's mirror drops old ones as new ABI numbers and point releases arrive. A pinned
 * default is kept when it is cached or apt can download it; otherwise the newest package of the same line
 * apt knows is used (after one `apt-get update` when apt does not know the pinned one), and the result says
 * so. `--kernel PKG` is never resolved: it stays exact.
 *
 * The line of a package is its kernel major.minor, its name's shape and its flavour: 6.1.0-47-amd64 is in
 * the line `linux-image-6.1.N-ABI-amd64`, 6.12.111+deb12-amd64 in `linux-image-6.12.N+deb12-amd64`.
 * The pure part (lineOf, newestOf, resolveWith) is unit-tested; the apt probes are thin.
 */
import { spawnSync } from 'node:child_process';
import { cacheDir, isCached, KernelFetchError, prepareKernel, type KernelTree } from './cache.js';

export interface KernelLine {
  /** "6.12": what the line is called in messages. */
  name: string;
  /** Matches exactly the packages of the line (not -unsigned, -dbg, other flavours). */
  pattern: RegExp;
  /** The numbers that order the line: patch level, then ABI number when the name has one. */
  key(pkg: string): number[] | undefined;
}

const NAME = /^linux-image-(\d+)\.(\d+)\.(\d+)(?:-(\d+))?((?:\+[a-z0-9.~]+)?)-([a-z][a-z0-9-]*)$/;
const reEsc = (s: string): string => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/** The line of a versioned kernel image package, or undefined for a name of another shape. */
export function lineOf(pkg: string): KernelLine | undefined {
  const m = NAME.exec(pkg);
  if (!m) return undefined;
  const [, major, minor, , abi, tag, flavour] = m;
  const pattern = new RegExp(`^linux-image-${major}\\.${minor}\\.(\\d+)${abi !== undefined ? '-(\\d+)' : ''}${reEsc(tag)}-${reEsc(flavour)}$`);
  return {
    name: `${major}.${minor}`,
    pattern,
    key: (p) => {
      const k = pattern.exec(p);
      return k ? k.slice(1).map(Number) : undefined;
    },
  };
}

/** Lexicographic order of two keys of one line (same length). */
function compareKeys(a: number[], b: number[]): number {
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return a[i] - b[i];
  return 0;
}

/** The packages of `line` among `names`, newest first (by patch level, then ABI number). */
export function newestFirst(line: KernelLine, names: readonly string[]): string[] {
  const keyed = [...new Set(names)].flatMap((pkg) => {
    const key = line.key(pkg);
    return key ? [{ pkg, key }] : [];
  });
  return keyed.sort((a, b) => compareKeys(b.key, a.key)).map((k) => k.pkg);
}

/** The newest package of `line` among `names`, if any. */
export const newestOf = (line: KernelLine, names: readonly string[]): string | undefined => newestFirst(line, names)[0];

/** What resolveWith asks of the machine (injected: the tests give answers, main gives apt). */
export interface ResolveProbes {
  /** The package is in the kernel cache (a .deb or an unpacked tree). */
  cached(pkg: string): boolean;
  /** apt has a candidate for it (apt-cache policy). */
  downloadable(pkg: string): boolean;
  /** Names of packages apt knows that match `pattern` (apt-cache search --names-only). */
  search(pattern: RegExp): string[];
  /** Refresh apt's lists once (apt-get update); false when it could not run. */
  update(): boolean;
}

export interface Resolved {
  /** The package to use. */
  pkg: string;
  /** Set when it is not the pinned one, or when finding it took an apt-get update: what happened. */
  note?: string;
}

/** The package to use for the pinned default `pkg`. Throws when neither it nor any of its line can be had. */
export function resolveWith(pkg: string, p: ResolveProbes): Resolved {
  if (p.cached(pkg) || p.downloadable(pkg)) return { pkg };
  // apt's lists may be empty (a fresh machine) or old: refresh them once and ask again.
  const updated = p.update();
  if (updated && p.downloadable(pkg)) return { pkg, note: `apt knew ${pkg} only after apt-get update` };
  const line = lineOf(pkg);
  // Newest first, so apt is asked about as few packages as possible.
  const found = line ? newestFirst(line, p.search(line.pattern)).find((n) => n !== pkg && (p.cached(n) || p.downloadable(n))) : undefined;
  if (!found) {
    throw new KernelFetchError(
      `${pkg} is neither cached nor downloadable${line ? `, and apt knows no other package of the ${line.name} line` : ''}${updated ? ' (after apt-get update)' : ''}: name one with --kernel`,
    );
  }
  return { pkg: found, note: `${pkg} is not cached and apt cannot download it: using ${found}, the newest package of the ${line!.name} line apt knows` };
}

/**
 * The tree of a pinned default kernel, resolved as above; when apt said the pinned package was downloadable
 * but fetching it failed (the lists were older than the mirror), the line's newest is used instead.
 */
export function preparePinned(pkg: string, log: (line: string) => void, dir = cacheDir()): { tree: KernelTree; note?: string } {
  const failed = new Set<string>();
  const probes = (): ResolveProbes => {
    const apt = aptProbes((n) => isCached(n, dir), log);
    return { ...apt, downloadable: (n) => !failed.has(n) && apt.downloadable(n) };
  };
  let r = resolveWith(pkg, probes());
  if (r.note) log(r.note);
  try {
    return { tree: prepareKernel(r.pkg, log, dir), note: r.note };
  } catch (err) {
    if (!(err instanceof KernelFetchError) || r.pkg !== pkg) throw err;
    failed.add(pkg);
    r = resolveWith(pkg, probes());
    const note = `${(err as Error).message}; ${r.note}`;
    log(note);
    return { tree: prepareKernel(r.pkg, log, dir), note };
  }
}

/** apt's answers for resolveWith on this machine; `cached` from the kernel cache. */
export function aptProbes(cached: (pkg: string) => boolean, log: (line: string) => void): ResolveProbes {
  const known = new Map<string, boolean>();
  let didUpdate = false;
  return {
    cached,
    downloadable(pkg) {
      let v = known.get(pkg);
      if (v === undefined) {
        const r = spawnSync('apt-cache', ['policy', pkg], { encoding: 'utf8' });
        const cand = /^\s*Candidate:\s*(\S+)/m.exec(r.stdout ?? '')?.[1];
        v = cand !== undefined && cand !== '(none)';
        known.set(pkg, v);
      }
      return v;
    },
    search(pattern) {
      // apt-cache takes a POSIX regex; the line's own pattern filters exactly afterwards.
      const r = spawnSync('apt-cache', ['search', '--names-only', pattern.source.replace(/\\d/g, '[0-9]')], { encoding: 'utf8', maxBuffer: 1 << 24 });
      return (r.stdout ?? '').split('\n').map((l) => l.split(' ')[0]).filter((n) => pattern.test(n));
    },
    update() {
      if (didUpdate) return false;
      didUpdate = true;
      if (process.getuid?.() !== 0) return false;
      log('apt does not know the pinned kernel package: running apt-get update once');
      const r = spawnSync('apt-get', ['update', '-qq'], { stdio: 'ignore' });
      known.clear();
      return r.status === 0;
    },
  };
}
