/**
 * Boot one kernel under QEMU's software emulation (TCG, `-cpu max`: it emulates AMD SVM, so kvm-amd
 * loads and /dev/kvm works inside), run one job script chrooted into the host's root, and bring back its
 * exit status, stdout, stderr and any file it wrote to the result folder.
 *
 * The console is followed line by line (guest-init.ts prints `KT-MATRIX:` markers): a kernel that dies
 * before the root is ready (an oops, a panic — seen once with -smp 2 as an int3 oops — or QEMU exiting)
 * is a crashed boot and is retried once, saying so; a crash during the job is reported, never retried.
 * Boot and job have their own timeouts. QEMU is killed on every exit path, including our own SIGINT.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import type { KernelTree } from './cache.js';
import { MARK } from './guest-init.js';
import { buildInitramfs } from './initramfs.js';

export interface BootOptions {
  /** vCPUs of the emulated machine (2: node's threads get their own CPU; a crashed boot is retried). */
  smp: number;
  memMb: number;
  /** From QEMU's start until the guest's root is ready. */
  bootTimeoutS: number;
  /** From the job's start until it ends. */
  jobTimeoutS: number;
  /** Progress lines for the user (stderr). */
  log: (line: string) => void;
  /** Where the last console of each kernel is kept (for a failure's diagnosis). */
  consoleLog?: string;
  /** Replaces the guest's /init script (tests: a kernel that dies while booting). */
  init?: string;
}

export interface GuestRun {
  kernel: string;
  /** The job's exit status; null when it did not finish (see failure). */
  status: number | null;
  stdout: string;
  stderr: string;
  /** Files the job wrote to the result folder ($KT_OUT inside the guest), by name. */
  files: Record<string, string>;
  /** Why the run failed outside the job: "boot timeout", "kernel crashed during the job: …", … */
  failure?: string;
  /** Set when the first boot crashed and this is the retry. */
  retried?: string;
  bootS: number;
  jobS: number;
  wallS: number;
}

/** Every QEMU we started and have not yet seen exit. */
const live = new Set<ChildProcess>();

export function killAllGuests(): void {
  for (const child of live) child.kill('SIGKILL');
}
process.on('exit', killAllGuests);

const CRASH = /Kernel panic|Oops[:\s]|BUG: |int3: 0000|general protection fault|kernel BUG at|Unable to handle kernel/;

interface Attempt {
  phase: 'boot' | 'job' | 'done';
  crash?: string;
  fail?: string;
  timeout?: string;
  bootS: number;
  jobS: number;
  console: string[];
}

export function qemuArgs(tree: KernelTree, initrd: string, outDir: string, o: Pick<BootOptions, 'smp' | 'memMb'>): string[] {
  const p9 = 'security_model=none,multidevs=remap';
  return [
    '-accel', 'tcg', '-cpu', 'max', '-smp', String(o.smp), '-m', String(o.memMb),
    '-nographic', '-no-reboot',
    '-kernel', tree.vmlinuz, '-initrd', initrd,
    // panic=-1 + oops=panic + -no-reboot: a dying kernel ends QEMU instead of hanging until the timeout.
    '-append', 'console=ttyS0 loglevel=4 panic=-1 oops=panic rdinit=/init',
    '-virtfs', `local,path=/,mount_tag=kt-root,${p9},readonly=on`,
    '-virtfs', `local,path=${outDir},mount_tag=kt-out,${p9}`,
  ];
}

function attempt(tree: KernelTree, work: string, opts: BootOptions): Promise<Attempt> {
  const out = join(work, 'out');
  const a: Attempt = { phase: 'boot', bootS: 0, jobS: 0, console: [] };
  const t0 = performance.now();
  let tJob = 0;
  return new Promise((resolve) => {
    const child = spawn('qemu-system-x86_64', qemuArgs(tree, join(work, 'initrd.gz'), out, opts), { stdio: ['ignore', 'pipe', 'pipe'] });
    live.add(child);
    let timer: NodeJS.Timeout | undefined;
    const arm = (s: number, why: string): void => {
      clearTimeout(timer);
      timer = setTimeout(() => {
        a.timeout = why;
        child.kill('SIGKILL');
      }, s * 1000);
    };
    arm(opts.bootTimeoutS, `no root after ${opts.bootTimeoutS} s (boot timeout)`);
    const onLine = (raw: string): void => {
      const line = raw.replace(/\r$/, '');
      a.console.push(line);
      if (!a.crash && CRASH.test(line)) {
        a.crash = line.trim();
        // The panic message follows the oops; give QEMU a moment to exit by itself (panic=-1), then stop it.
        setTimeout(() => child.kill('SIGKILL'), 3000).unref();
      }
      const at = line.indexOf(MARK);
      if (at < 0) return;
      const [what, ...rest] = line.slice(at + MARK.length).trim().split(' ');
      if (what === 'ROOT-READY') {
        a.bootS = (performance.now() - t0) / 1000;
        a.phase = 'job';
      } else if (what === 'JOB-START') {
        tJob = performance.now();
        arm(opts.jobTimeoutS, `the job ran longer than ${opts.jobTimeoutS} s (job timeout)`);
      } else if (what === 'JOB-END') {
        a.jobS = (performance.now() - tJob) / 1000;
        a.phase = 'done';
        // poweroff -f normally ends QEMU at once; do not wait forever if it does not.
        arm(15, '');
      } else if (what === 'FAIL') {
        a.fail = rest.join(' ');
      }
    };
    createInterface({ input: child.stdout! }).on('line', onLine);
    createInterface({ input: child.stderr! }).on('line', (l) => onLine(`qemu: ${l}`));
    child.on('error', (err) => {
      a.fail = `cannot start qemu-system-x86_64: ${(err as NodeJS.ErrnoException).code ?? err.message}`;
    });
    child.on('close', () => {
      clearTimeout(timer);
      live.delete(child);
      if (a.phase === 'done') a.timeout = undefined;
      if (a.phase === 'job' && tJob && !a.jobS) a.jobS = (performance.now() - tJob) / 1000;
      resolve(a);
    });
  });
}

function readOut(out: string): Record<string, string> {
  const files: Record<string, string> = {};
  for (const f of readdirSync(out)) {
    try {
      files[f] = readFileSync(join(out, f), 'utf8');
    } catch {
      // a folder or an unreadable file: not a result
    }
  }
  return files;
}

/** Boot `tree`, run `jobScript` (sh) inside, return what it did. Never throws for guest failures. */
export async function runInGuest(tree: KernelTree, jobScript: string, opts: BootOptions): Promise<GuestRun> {
  const t0 = performance.now();
  const work = mkdtempSync(join(tmpdir(), 'kt-kernel-'));
  try {
    try {
      writeFileSync(join(work, 'initrd.gz'), buildInitramfs(tree, opts.init));
    } catch (err) {
      // e.g. a cloud kernel without 9p: this harness cannot give it the host's root.
      const failure = `cannot build an initramfs that reaches the host's root over virtio-9p: ${(err as Error).message}`;
      return { kernel: tree.pkg, status: null, stdout: '', stderr: '', files: {}, failure, bootS: 0, jobS: 0, wallS: (performance.now() - t0) / 1000 };
    }
    let retried: string | undefined;
    for (let n = 1; ; n++) {
      const out = join(work, 'out');
      rmSync(out, { recursive: true, force: true });
      mkdirSync(out);
      writeFileSync(join(out, 'boot.env'), `KT_MODULES='${tree.modules}'\nKT_LOAD='kvm_amd'\nKT_DEADLINE=${opts.jobTimeoutS + 30}\n`);
      writeFileSync(join(out, 'job.sh'), jobScript);
      const a = await attempt(tree, work, opts);
      if (opts.consoleLog) writeFileSync(opts.consoleLog, a.console.join('\n') + '\n');
      const bootCrash = a.phase === 'boot' && !a.fail && (a.crash !== undefined || !a.timeout);
      if (bootCrash && n === 1) {
        retried = `the first boot crashed (${a.crash ?? 'QEMU exited before the root was ready'}); retried once`;
        opts.log(`${tree.pkg}: ${retried}`);
        continue;
      }
      const files = readOut(out);
      const status = files.status !== undefined && a.phase === 'done' ? Number(files.status.trim()) : null;
      let failure: string | undefined;
      if (a.fail) failure = `guest setup failed: ${a.fail}`;
      else if (a.phase === 'boot') failure = a.crash ? `kernel crashed while booting: ${a.crash}` : a.timeout ?? 'QEMU exited before the root was ready';
      else if (a.phase === 'job') failure = a.crash ? `kernel crashed during the job: ${a.crash}` : a.timeout ?? 'QEMU exited during the job';
      if (failure && opts.consoleLog) failure += ` (console: ${opts.consoleLog})`;
      const { stdout = '', stderr = '', status: _s, 'boot.env': _b, 'job.sh': _j, ...rest } = files;
      return { kernel: tree.pkg, status, stdout, stderr, files: rest, failure, retried, bootS: a.bootS, jobS: a.jobS, wallS: (performance.now() - t0) / 1000 };
    }
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}
