/**
 * The house rules of src/, checked by test/architecture.test.ts on every `npm test` (and runnable by hand:
 * `node dist/scripts/check-architecture.js`):
 *
 *  1. src/ reads as the pipeline. STAGES below is the one place that says which folder is which stage;
 *     a file may import its own stage or a lower one, never a higher one, and src/ never imports scripts/
 *     or test/. A folder of src/ missing from the table is an error too, so a new folder gets a place.
 *  2. No import cycle between files (src/ and scripts/): every cycle is printed file → file → … .
 *  3. No source file in src/ or bpf/ over MAX_LINES lines, except generated tables (*.generated.ts).
 *
 * Imports are read with the TypeScript parser (ts.preProcessFile): static imports, `export … from`,
 * type-only imports and import() with a literal specifier all count, because each is an arrow a reader
 * follows. docs/ARCHITECTURE.md draws the same table in words.
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import ts from 'typescript';

export interface Stage {
  name: string;
  /** Folders (relative to the repository root) that belong to the stage. */
  folders: readonly string[];
}

/** The pipeline, lowest stage first. Same-stage folders may import each other (cycles are still caught). */
export const STAGES: readonly Stage[] = [
  { name: 'cdata', folders: ['src/cdata'] },
  { name: 'ffi', folders: ['src/ffi'] },
  { name: 'btf', folders: ['src/btf'] },
  { name: 'kvm', folders: ['src/kvm'] },
  { name: 'guest', folders: ['src/guest'] },
  { name: 'bpf', folders: ['src/bpf'] },
  { name: 'ringbuf', folders: ['src/ringbuf'] },
  { name: 'decode', folders: ['src/decode'] },
  { name: 'analysis', folders: ['src/analysis'] },
  { name: 'export/report', folders: ['src/export', 'src/report'] },
  { name: 'capture', folders: ['src/capture', 'src/top'] },
  { name: 'cli', folders: ['src/cli'] },
];

export const MAX_LINES = 400;

/** Arrows and sizes known to be wrong today, each with the branch that fixes it. A stale entry is an error. */
export interface KnownExceptions {
  /** Files allowed past MAX_LINES. */
  long: readonly string[];
  /** "from -> to" imports allowed to run upward. */
  upward: readonly string[];
}

export const KNOWN_EXCEPTIONS: KnownExceptions = {
  long: [],
  upward: [],
};

export interface Violation {
  rule: 'upward' | 'cycle' | 'too-long' | 'unplaced' | 'stale-exception';
  message: string;
}

export interface CheckOptions {
  stages?: readonly Stage[];
  maxLines?: number;
  exceptions?: KnownExceptions;
}

const SOURCE = /\.(ts|mts|cts|js|mjs)$/;
const LINE_COUNTED = /\.(ts|mts|cts|js|mjs|c|h)$/;

function walk(dir: string): string[] {
  if (!existsSync(dir)) return [];
  const out: string[] = [];
  for (const name of readdirSync(dir).sort()) {
    if (name.startsWith('.')) continue; // generated and gitignored (bpf/.build/vmlinux.h)
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...walk(p));
    else out.push(p);
  }
  return out;
}

/** Repository-relative path with forward slashes. */
const rel = (root: string, p: string): string => relative(root, p).split(sep).join('/');

/** The relative module specifiers a file imports, as written. */
export function importSpecifiers(text: string): string[] {
  const info = ts.preProcessFile(text, true, true);
  return info.importedFiles.map((f) => f.fileName).filter((s) => s.startsWith('.'));
}

/** The file a relative specifier names: NodeNext writes "./x.js" for x.ts. */
function resolveImport(root: string, from: string, spec: string): string | undefined {
  const base = resolve(root, dirname(from), spec);
  const candidates = [base, base.replace(/\.js$/, '.ts'), base.replace(/\.mjs$/, '.mts'), `${base}.ts`, join(base, 'index.ts')];
  const hit = candidates.find((c) => existsSync(c) && statSync(c).isFile());
  return hit ? rel(root, hit) : undefined;
}

function stageIndex(stages: readonly Stage[], file: string): number {
  let best = -1;
  let bestLen = -1;
  stages.forEach((s, i) => {
    for (const f of s.folders) {
      if ((file === f || file.startsWith(`${f}/`)) && f.length > bestLen) {
        best = i;
        bestLen = f.length;
      }
    }
  });
  return best;
}

/** Import graph of the TypeScript sources under `folders` (repository-relative file → imported files). */
export function importGraph(root: string, folders: readonly string[]): Map<string, string[]> {
  const graph = new Map<string, string[]>();
  for (const folder of folders) {
    for (const abs of walk(join(root, folder))) {
      if (!SOURCE.test(abs) || abs.endsWith('.d.ts')) continue;
      const file = rel(root, abs);
      const targets = new Set<string>();
      for (const spec of importSpecifiers(readFileSync(abs, 'utf8'))) {
        const t = resolveImport(root, file, spec);
        if (t) targets.add(t);
      }
      graph.set(file, [...targets].sort());
    }
  }
  return graph;
}

/** Every import cycle as a closed path (first file repeated at the end), one per strongly connected group. */
export function findCycles(graph: Map<string, string[]>): string[][] {
  // Tarjan's strongly connected components; then one shortest cycle through each component's first file.
  let index = 0;
  const idx = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const groups: string[][] = [];
  const strong = (v: string): void => {
    idx.set(v, index);
    low.set(v, index++);
    stack.push(v);
    onStack.add(v);
    for (const w of graph.get(v) ?? []) {
      if (!graph.has(w)) continue;
      if (!idx.has(w)) {
        strong(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (onStack.has(w)) low.set(v, Math.min(low.get(v)!, idx.get(w)!));
    }
    if (low.get(v) === idx.get(v)) {
      const g: string[] = [];
      let w: string;
      do {
        w = stack.pop()!;
        onStack.delete(w);
        g.push(w);
      } while (w !== v);
      const selfLoop = g.length === 1 && (graph.get(v) ?? []).includes(v);
      if (g.length > 1 || selfLoop) groups.push(g.sort());
    }
  };
  for (const v of [...graph.keys()].sort()) if (!idx.has(v)) strong(v);

  return groups.map((g) => {
    const inGroup = new Set(g);
    const start = g[0];
    // Breadth-first from start back to start inside the group: the shortest cycle through it.
    const prev = new Map<string, string>();
    const queue = [start];
    const seen = new Set<string>();
    while (queue.length) {
      const v = queue.shift()!;
      for (const w of graph.get(v) ?? []) {
        if (!inGroup.has(w)) continue;
        if (w === start) {
          const path = [start];
          for (let x: string | undefined = v; x !== undefined && x !== start; x = prev.get(x)) path.splice(1, 0, x);
          return [...path, start];
        }
        if (!seen.has(w)) {
          seen.add(w);
          prev.set(w, v);
          queue.push(w);
        }
      }
    }
    return [...g, start];
  });
}

function lineCount(text: string): number {
  if (text.length === 0) return 0;
  const n = text.split('\n').length;
  return text.endsWith('\n') ? n - 1 : n;
}

/** Every rule broken under `root` (an empty list: the house is in order). */
export function checkArchitecture(root: string, opts: CheckOptions = {}): Violation[] {
  const stages = opts.stages ?? STAGES;
  const maxLines = opts.maxLines ?? MAX_LINES;
  const exceptions = opts.exceptions ?? KNOWN_EXCEPTIONS;
  const out: Violation[] = [];
  const usedLong = new Set<string>();
  const usedUpward = new Set<string>();

  // 1. stages
  const src = importGraph(root, ['src']);
  const unplacedFolders = new Set<string>();
  for (const [file, targets] of src) {
    const from = stageIndex(stages, file);
    if (from < 0) {
      unplacedFolders.add(dirname(file));
      continue;
    }
    for (const t of targets) {
      if (!t.startsWith('src/')) {
        out.push({ rule: 'upward', message: `${file} imports ${t}: src/ must not depend on ${t.split('/')[0]}/` });
        continue;
      }
      const to = stageIndex(stages, t);
      if (to <= from) continue;
      const arrow = `${file} -> ${t}`;
      if (exceptions.upward.includes(arrow)) {
        usedUpward.add(arrow);
        continue;
      }
      out.push({ rule: 'upward', message: `${arrow}: stage ${stages[from].name} imports the higher stage ${stages[to].name}` });
    }
  }
  for (const d of [...unplacedFolders].sort()) {
    out.push({ rule: 'unplaced', message: `${d}/ is in no stage: add it to STAGES in scripts/check-architecture.ts` });
  }

  // 2. cycles (src/ and the dev scripts)
  const all = new Map([...src, ...importGraph(root, ['scripts'])]);
  for (const c of findCycles(all)) out.push({ rule: 'cycle', message: `import cycle: ${c.join(' -> ')}` });

  // 3. file sizes
  for (const folder of ['src', 'bpf']) {
    for (const abs of walk(join(root, folder))) {
      if (!LINE_COUNTED.test(abs) || /\.generated\.ts$/.test(abs)) continue;
      const file = rel(root, abs);
      const n = lineCount(readFileSync(abs, 'utf8'));
      if (n <= maxLines) continue;
      if (exceptions.long.includes(file)) {
        usedLong.add(file);
        continue;
      }
      out.push({ rule: 'too-long', message: `${file} has ${n} lines (more than ${maxLines}): split it along its seams` });
    }
  }

  for (const f of exceptions.long) {
    if (!usedLong.has(f)) out.push({ rule: 'stale-exception', message: `${f} is no longer over ${maxLines} lines (or gone): remove it from KNOWN_EXCEPTIONS.long` });
  }
  for (const a of exceptions.upward) {
    if (!usedUpward.has(a)) out.push({ rule: 'stale-exception', message: `${a} no longer exists: remove it from KNOWN_EXCEPTIONS.upward` });
  }
  return out;
}

const isMain = process.argv[1] !== undefined && import.meta.url === pathToFileURL(resolve(process.argv[1])).href;
if (isMain) {
  // dist/scripts/check-architecture.js and scripts/check-architecture.ts both sit two levels below the root.
  let root = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(root, 'package.json'))) root = dirname(root);
  const v = checkArchitecture(root);
  for (const x of v) process.stdout.write(`${x.rule}: ${x.message}\n`);
  process.stdout.write(v.length ? `${v.length} architecture rule(s) broken\n` : 'architecture: in order\n');
  process.exitCode = v.length ? 1 : 0;
}
