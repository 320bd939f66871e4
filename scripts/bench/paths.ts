/**
 * Where the benchmark finds the repository: it runs as dist/scripts/bench.js but also needs files that tsc
 * does not copy (scripts/bench/kvm-loop.c, scripts/bootstrap.mjs), so everything is resolved from the
 * package root, found by walking up to kvm-trace's package.json.
 */
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

function findRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++) {
    const pkg = join(dir, 'package.json');
    if (existsSync(pkg)) {
      try {
        if (JSON.parse(readFileSync(pkg, 'utf8')).name === 'kvm-trace') return dir;
      } catch {
        // not ours: keep walking
      }
    }
    dir = dirname(dir);
  }
  throw new Error('cannot find the kvm-trace package root above the bench script');
}

export const repoRoot = findRoot();
/** The built CLI binary (`kvm-trace`). */
export const cliMain = join(repoRoot, 'dist', 'src', 'cli', 'main.js');
export const bootstrapScript = join(repoRoot, 'scripts', 'bootstrap.mjs');
export const cLoopSource = join(repoRoot, 'scripts', 'bench', 'kvm-loop.c');

/** Absolute path of a compiled module under dist/ (e.g. "src/decode/index.js"). */
export function distPath(rel: string): string {
  return join(repoRoot, 'dist', rel);
}
