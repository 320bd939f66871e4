#!/usr/bin/env node
// Idempotent setup run before `npm run demo`, `npm test` and `npm run bench`.
// Plain JavaScript on purpose: it must run before any npm dependency or TypeScript build exists.
// It installs only what is missing (Debian packages via apt-get, npm deps via `npm ci`), then brings
// dist/ up to date with an incremental tsc build. A second run installs nothing.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const args = new Set(process.argv.slice(2));

// Debian packages per purpose. libbpf1 is loaded at run time through koffi (libbpf.so.1).
const PACKAGES = {
  run: ['libbpf1'],
  // chromium renders the HTML report in a test; cc builds the C baseline of the guest benchmark and the
  // ioctl-table cross-check; bpftool's BTF dump cross-checks the BTF reader; QEMU is the real VMM whose
  // ioctl stream must decode with no unknown names; clang compiles the BTF reader's test object (BTF kinds
  // gcc does not emit); tmux runs `kvm-trace top` in a real terminal (send-keys, capture-pane); prometheus
  // evaluates every dashboard query against a real capture (the test starts its own server: no systemd here);
  // pahole (dwarves) makes real split BTF over vmlinux, as for kernel modules; llvm and libbpf-dev complete
  // the toolchain the prebuilt BPF object is rebuilt with and compared against (test/bpf-prebuilt.test.ts).
  test: ['libbpf1', 'chromium', 'gcc', 'libc6-dev', 'bpftool', 'qemu-system-x86', 'clang', 'tmux', 'prometheus', 'dwarves', 'llvm', 'libbpf-dev'],
  // The kernel matrix (npm run test:kernels, also run by npm test): QEMU boots Debian's kernels, downloaded
  // with apt-get download and given a modules.dep by depmod (kmod); busybox-static is the initramfs; xz
  // unpacks .ko.xz modules; bpftool inside the guest lists BPF objects left behind.
  kernels: ['qemu-system-x86', 'busybox-static', 'kmod', 'xz-utils', 'bpftool', 'libbpf1'],
  bench: ['libbpf1', 'gcc', 'libc6-dev'],
  peers: ['strace', 'linux-perf', 'bpftrace'],
  'bpf-build': ['clang', 'llvm', 'bpftool', 'libbpf-dev'],
};

function log(msg) {
  process.stderr.write(`bootstrap: ${msg}\n`);
}

function isInstalled(pkg) {
  const r = spawnSync('dpkg-query', ['-W', '-f=${Status}', pkg], { encoding: 'utf8' });
  return r.status === 0 && r.stdout.includes('install ok installed');
}

function ensurePackages(wanted) {
  const missing = [...new Set(wanted)].filter((p) => !isInstalled(p));
  if (missing.length === 0) return;
  if (process.getuid?.() !== 0) {
    log(`missing Debian packages: ${missing.join(' ')} (run as root, or install them with apt-get)`);
    return;
  }
  log(`installing Debian packages: ${missing.join(' ')}`);
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  execFileSync('apt-get', ['update', '-qq'], { stdio: ['ignore', 'ignore', 'inherit'], env });
  execFileSync('apt-get', ['install', '-y', '-qq', '--no-install-recommends', ...missing], {
    stdio: ['ignore', 'ignore', 'inherit'],
    env,
  });
}

function mtime(path) {
  return existsSync(path) ? statSync(path).mtimeMs : 0;
}

function ensureNodeModules() {
  const marker = join(root, 'node_modules', '.package-lock.json');
  if (mtime(marker) >= mtime(join(root, 'package-lock.json'))) return;
  log('installing npm dependencies (npm ci)');
  execFileSync('npm', ['ci', '--no-audit', '--no-fund', '--loglevel=error'], { cwd: root, stdio: 'inherit' });
}

function build() {
  const tsc = join(root, 'node_modules', 'typescript', 'bin', 'tsc');
  const r = spawnSync(process.execPath, [tsc, '-p', join(root, 'tsconfig.json')], { cwd: root, stdio: 'inherit' });
  if (r.status !== 0) {
    log('TypeScript build failed');
    process.exit(r.status ?? 1);
  }
}

const wanted = [...PACKAGES.run];
if (args.has('--test')) wanted.push(...PACKAGES.test, ...PACKAGES.kernels);
if (args.has('--kernels')) wanted.push(...PACKAGES.kernels);
if (args.has('--bench')) wanted.push(...PACKAGES.bench);
if (args.has('--with-peers')) wanted.push(...PACKAGES.peers);
if (args.has('--bpf-build')) wanted.push(...PACKAGES['bpf-build']);
try {
  ensurePackages(wanted);
  ensureNodeModules();
} catch (err) {
  log(`setup failed: ${err.message.split('\n')[0]}`);
  process.exit(1);
}
if (!args.has('--no-build')) build();
