/**
 * Where the prebuilt BPF object lives. Found relative to this module so it works from src/ (vitest) and
 * from dist/src/ (the built CLI): walk up to the package root, the directory holding bpf/prebuilt/.
 */
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const OBJECT_RELATIVE = join('bpf', 'prebuilt', 'kvm_trace.bpf.o');

/** The package root (the directory containing bpf/prebuilt/kvm_trace.bpf.o). */
export function packageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++) {
    if (existsSync(join(dir, OBJECT_RELATIVE))) return dir;
    dir = dirname(dir);
  }
  throw new Error(`kvm-trace: ${OBJECT_RELATIVE} not found above ${fileURLToPath(import.meta.url)}`);
}

/** Path of the committed, prebuilt BPF object. */
export function prebuiltObjectPath(): string {
  return join(packageRoot(), OBJECT_RELATIVE);
}
