/**
 * kvm-trace's own version, from its package.json (for --version and a binary capture's head).
 */
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

let cached: string | undefined;

export function packageVersion(): string {
  if (cached) return cached;
  // dist/src/cli/version.js and src/cli/version.ts both sit three levels below the package root.
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 4; i++) {
    try {
      return (cached = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')).version as string);
    } catch {
      dir = dirname(dir);
    }
  }
  return (cached = '0.0.0');
}
