/**
 * Debian kernel packages for the matrix: downloaded with `apt-get download` (nothing is installed into the
 * host), unpacked with `dpkg -x`, given a modules.dep with `depmod -b`, all kept in one cache folder so a
 * second run (and CI on the same machine) downloads and unpacks nothing.
 *
 * Cache folder: $KVM_TRACE_KERNEL_CACHE, else /var/cache/kvm-trace/kernels as root, else
 * $XDG_CACHE_HOME/kvm-trace/kernels (~/.cache/…). Layout:
 *   debs/PKG_VERSION_amd64.deb      what apt-get download fetched
 *   trees/PKG/                      the unpacked package (boot/vmlinuz-*, lib/modules/*), complete when
 *   trees/PKG/.kt-complete          exists (written last: an interrupted unpack is redone)
 *   initramfs/PKG.cpio.gz           built by initramfs.ts
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';

/**
 * Debian 12's stock kernel and the 6.12 line Debian 12 ships in its updates. Pinned, so runs compare; when
 * the mirror has dropped one (and it is not cached), resolve.ts takes the newest of its line instead.
 */
export const DEFAULT_KERNELS = ['linux-image-6.1.0-47-amd64', 'linux-image-6.12.111+deb12-amd64'];

export class KernelFetchError extends Error {}

export interface KernelTree {
  /** Debian package name, e.g. linux-image-6.12.111+deb12-amd64. */
  pkg: string;
  /** `uname -r` inside the guest, e.g. 6.12.111+deb12-amd64 (the lib/modules folder name). */
  release: string;
  /** The unpacked package. */
  root: string;
  vmlinuz: string;
  /** root/lib/modules/RELEASE */
  modules: string;
}

export function cacheDir(): string {
  if (process.env.KVM_TRACE_KERNEL_CACHE) return process.env.KVM_TRACE_KERNEL_CACHE;
  if (process.getuid?.() === 0) return '/var/cache/kvm-trace/kernels';
  return join(process.env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'kvm-trace', 'kernels');
}

/** A package name apt would accept, so nothing odd reaches a command line or a path. */
export function checkPackageName(pkg: string): void {
  if (!/^linux-image-[a-z0-9][a-z0-9.+~-]*$/.test(pkg)) {
    throw new KernelFetchError(`'${pkg}' is not a Debian kernel image package name (linux-image-…)`);
  }
}

/** The package is in the cache: unpacked, or its .deb downloaded. */
export function isCached(pkg: string, dir = cacheDir()): boolean {
  return existsSync(join(dir, 'trees', pkg, '.kt-complete')) || findDeb(join(dir, 'debs'), pkg) !== undefined;
}

function findDeb(debs: string, pkg: string): string | undefined {
  if (!existsSync(debs)) return undefined;
  const hit = readdirSync(debs).find((f) => f.startsWith(`${pkg}_`) && f.endsWith('.deb'));
  return hit && join(debs, hit);
}

function aptDownload(pkg: string, dir: string): { ok: boolean; why: string } {
  const r = spawnSync('apt-get', ['download', '-q', pkg], { cwd: dir, encoding: 'utf8', env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
  if (r.error) return { ok: false, why: `apt-get: ${(r.error as NodeJS.ErrnoException).code ?? r.error.message}` };
  const why = (r.stderr || r.stdout).split('\n').filter((l) => /^E:/.test(l)).join(' ') || `apt-get download exited ${r.status}`;
  return { ok: r.status === 0, why };
}

/** The package's .deb in the cache, downloading it (once) when missing. */
export function fetchDeb(pkg: string, log: (line: string) => void, dir = cacheDir()): string {
  checkPackageName(pkg);
  const debs = join(dir, 'debs');
  const have = findDeb(debs, pkg);
  if (have) return have;
  mkdirSync(debs, { recursive: true });
  // apt-get download writes into its cwd; a private folder keeps a half-written file out of debs/.
  const part = join(debs, `.part-${process.pid}`);
  rmSync(part, { recursive: true, force: true });
  mkdirSync(part);
  try {
    log(`downloading ${pkg} (apt-get download)`);
    let r = aptDownload(pkg, part);
    if (!r.ok && process.getuid?.() === 0) {
      // A fresh machine may have empty package lists.
      log(`apt-get download failed (${r.why}); running apt-get update once`);
      spawnSync('apt-get', ['update', '-qq'], { stdio: 'ignore' });
      r = aptDownload(pkg, part);
    }
    const got = readdirSync(part).find((f) => f.endsWith('.deb'));
    if (!r.ok || !got) throw new KernelFetchError(`cannot download ${pkg}: ${r.why}`);
    renameSync(join(part, got), join(debs, got));
    return join(debs, got);
  } finally {
    rmSync(part, { recursive: true, force: true });
  }
}

function treeOf(pkg: string, root: string): KernelTree {
  const modRoot = join(root, 'lib', 'modules');
  const releases = existsSync(modRoot) ? readdirSync(modRoot) : [];
  if (releases.length !== 1) {
    const hint = releases.length === 0 ? ' (a meta-package? name a versioned one, e.g. linux-image-6.12.111+deb12-amd64)' : '';
    throw new KernelFetchError(`${pkg}: expected one lib/modules/<release> in the package, found ${releases.length}${hint}`);
  }
  const release = releases[0];
  const vmlinuz = join(root, 'boot', `vmlinuz-${release}`);
  if (!existsSync(vmlinuz)) throw new KernelFetchError(`${pkg}: no boot/vmlinuz-${release} in the package`);
  return { pkg, release, root, vmlinuz, modules: join(modRoot, release) };
}

/**
 * Download (once), unpack (once) and depmod a kernel package; returns where its files are. The tree is
 * built in a private folder and renamed into place, so two runs on a cold cache do not trip over each other.
 */
export function prepareKernel(pkg: string, log: (line: string) => void, dir = cacheDir()): KernelTree {
  checkPackageName(pkg);
  const root = join(dir, 'trees', pkg);
  if (existsSync(join(root, '.kt-complete'))) return treeOf(pkg, root);
  const deb = fetchDeb(pkg, log, dir);
  log(`unpacking ${deb.split('/').pop()} (dpkg -x, depmod -b)`);
  const part = join(dir, 'trees', `.part-${pkg}-${process.pid}`);
  rmSync(part, { recursive: true, force: true });
  mkdirSync(part, { recursive: true });
  try {
    execFileSync('dpkg', ['-x', deb, part], { stdio: ['ignore', 'ignore', 'pipe'] });
    const tree = treeOf(pkg, part);
    execFileSync('depmod', ['-b', part, tree.release], { stdio: ['ignore', 'ignore', 'pipe'] });
    writeFileSync(join(part, '.kt-complete'), `${new Date().toISOString()}\n`);
    rmSync(root, { recursive: true, force: true }); // an incomplete tree of an interrupted run
    try {
      renameSync(part, root);
    } catch (err) {
      if (!existsSync(join(root, '.kt-complete'))) throw err; // else another run finished first: use its tree
    }
    return treeOf(pkg, root);
  } catch (err) {
    if (err instanceof KernelFetchError) throw err;
    const e = err as NodeJS.ErrnoException & { stderr?: Buffer };
    throw new KernelFetchError(`cannot unpack ${pkg}: ${e.stderr?.toString().trim() || e.code || e.message}`);
  } finally {
    rmSync(part, { recursive: true, force: true });
  }
}
