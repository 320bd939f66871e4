/**
 * The guest's initramfs: busybox-static, the few modules the kernel needs to reach the host's root
 * (virtio-pci when it is a module, 9p over virtio, overlayfs), loaded in modules.dep order, and /init
 * (guest-init.ts). Everything else — node, the checkout, libbpf, bpftool — comes from the host's `/`
 * over 9p; kvm.ko and kvm-amd.ko are loaded later with the host's modprobe against the unpacked tree.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { cpioNewc, S_IFCHR, S_IFDIR, S_IFLNK, S_IFREG, type CpioEntry } from './cpio.js';
import { GUEST_DIRS, guestInit } from './guest-init.js';
import type { KernelTree } from './cache.js';

export const BUSYBOX = '/bin/busybox';

/** What the guest needs before it can mount the host's root. */
export const BOOT_MODULES = ['virtio_pci', '9pnet_virtio', '9p', 'overlay'];

/** Module name of a modules.dep path: kernel/fs/9p/9p.ko.xz → 9p, kvm-amd.ko → kvm_amd. */
export function moduleName(path: string): string {
  return basename(path).replace(/\.ko(\.(xz|zst|gz))?$/, '').replace(/-/g, '_');
}

/** modules.dep as name → { path, deps (paths) }. */
export function parseModulesDep(text: string): Map<string, { path: string; deps: string[] }> {
  const out = new Map<string, { path: string; deps: string[] }>();
  for (const line of text.split('\n')) {
    const colon = line.indexOf(':');
    if (colon <= 0) continue;
    const path = line.slice(0, colon).trim();
    const deps = line.slice(colon + 1).trim().split(/\s+/).filter(Boolean);
    out.set(moduleName(path), { path, deps });
  }
  return out;
}

/**
 * Module paths to load, dependencies first, each once. Names that are not modules but built in
 * (modules.builtin) are skipped; a name that is neither is an error.
 */
export function loadOrder(wanted: readonly string[], dep: Map<string, { path: string; deps: string[] }>, builtin: Set<string>): string[] {
  const order: string[] = [];
  const seen = new Set<string>();
  const byPath = new Map([...dep.values()].map((m) => [m.path, m]));
  const visit = (path: string): void => {
    if (seen.has(path)) return;
    seen.add(path);
    for (const d of byPath.get(path)?.deps ?? []) visit(d);
    order.push(path);
  };
  for (const name of wanted) {
    const m = dep.get(name);
    if (m) visit(m.path);
    else if (!builtin.has(name)) throw new Error(`module ${name} is neither in modules.dep nor built in`);
  }
  return order;
}

function moduleBytes(file: string): Buffer {
  if (file.endsWith('.xz')) return execFileSync('xz', ['-dc', file], { maxBuffer: 1 << 28 });
  if (file.endsWith('.zst')) return execFileSync('zstd', ['-dcq', file], { maxBuffer: 1 << 28 });
  if (file.endsWith('.gz')) return execFileSync('gzip', ['-dc', file], { maxBuffer: 1 << 28 });
  return readFileSync(file);
}

/** The gzipped initramfs for one kernel tree (`init` replaces guest-init.ts's script: tests make it crash). */
export function buildInitramfs(tree: KernelTree, init?: string): Buffer {
  if (!existsSync(BUSYBOX)) throw new Error(`${BUSYBOX} is missing (Debian package busybox-static)`);
  const dep = parseModulesDep(readFileSync(join(tree.modules, 'modules.dep'), 'utf8'));
  const builtinFile = join(tree.modules, 'modules.builtin');
  const builtin = new Set(existsSync(builtinFile) ? readFileSync(builtinFile, 'utf8').split('\n').filter(Boolean).map(moduleName) : []);
  const order = loadOrder(BOOT_MODULES, dep, builtin);

  const dir = (name: string): CpioEntry => ({ name, mode: S_IFDIR | 0o755 });
  const entries: CpioEntry[] = [
    ...['bin', 'dev', 'modules', ...GUEST_DIRS].map(dir),
    { name: 'dev/console', mode: S_IFCHR | 0o600, rdev: { major: 5, minor: 1 } },
    { name: 'bin/busybox', mode: S_IFREG | 0o755, data: readFileSync(BUSYBOX) },
    { name: 'bin/sh', mode: S_IFLNK | 0o777, data: Buffer.from('busybox') },
  ];
  const names: string[] = [];
  order.forEach((path, i) => {
    const name = `${String(i).padStart(2, '0')}-${moduleName(path)}.ko`;
    names.push(name);
    entries.push({ name: `modules/${name}`, mode: S_IFREG | 0o644, data: moduleBytes(join(tree.modules, path)) });
  });
  entries.push({ name: 'init', mode: S_IFREG | 0o755, data: Buffer.from(init ?? guestInit(names)) });
  return gzipSync(cpioNewc(entries), { level: 1 });
}
