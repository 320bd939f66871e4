/**
 * `npm run test:kernels`: kvm-trace on the kernels its users run. Each Debian kernel package is fetched
 * and cached (cache.ts), booted under QEMU/TCG with the host's `/` as its root (qemu.ts, guest-init.ts),
 * and either the checklist runs inside (checklist.ts; a kernel × check table, `--json`, `--markdown`) or
 * any command (`--exec`).
 *
 * This file is the bin: the only place that touches process.argv, signals and process.exit. QEMU is
 * killed on every exit path; a failure is one line on stderr and a non-zero exit.
 */
import { mkdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CommanderError } from 'commander';
import { cliOf, runChecklist } from './checklist.js';
import { repoRoot } from '../bench/paths.js';
import { shQuote } from './exec.js';
import { failedRow, kernelOk, type KernelResult } from './result.js';
import { markdownTable, textTable } from './table.js';
import { cacheDir, KernelFetchError, prepareKernel, type KernelTree } from './cache.js';
import { jobScript } from './exec.js';
import { preparePinned } from './resolve.js';
import { parseOptions, UsageError, type MatrixOptions } from './options.js';
import { killAllGuests, runInGuest, type BootOptions, type GuestRun } from './qemu.js';

const log = (line: string): void => void process.stderr.write(`test:kernels: ${line}\n`);

function bootOptions(o: MatrixOptions, pkg: string): BootOptions {
  const logs = join(cacheDir(), 'logs');
  mkdirSync(logs, { recursive: true });
  return { smp: o.smp, memMb: o.memMb, bootTimeoutS: o.bootTimeoutS, jobTimeoutS: o.jobTimeoutS, log, consoleLog: join(logs, `${pkg}.console.log`) };
}

/** The kernel tree for `pkg`: exact with --kernel, a pinned default resolved (resolve.ts) otherwise. */
function kernelTree(o: MatrixOptions, pkg: string): { tree: KernelTree; note?: string } {
  return o.pinned ? preparePinned(pkg, log) : { tree: prepareKernel(pkg, log) };
}

/** --exec: the command's output as it printed it, its status as our exit status (the first non-zero). */
async function execMode(o: MatrixOptions, cmd: string): Promise<number> {
  let exit = 0;
  for (const wanted of o.kernels) {
    const { tree } = kernelTree(o, wanted);
    const pkg = tree.pkg;
    log(`${pkg}: booting (TCG, ${o.smp} vCPUs) and running: ${cmd}`);
    const run: GuestRun = await runInGuest(tree, jobScript(cmd, o.cwd), bootOptions(o, pkg));
    process.stdout.write(run.stdout);
    process.stderr.write(run.stderr);
    const timing = `boot ${run.bootS.toFixed(1)} s, command ${run.jobS.toFixed(1)} s, total ${run.wallS.toFixed(1)} s`;
    if (run.failure) {
      log(`${pkg}: ${run.failure} (${timing})`);
      exit ||= 125;
    } else {
      log(`${pkg}: exit status ${run.status} (${timing})${run.retried ? `; ${run.retried}` : ''}`);
      exit ||= run.status ?? 125;
    }
  }
  return exit;
}

async function main(): Promise<number> {
  let o: MatrixOptions;
  try {
    o = parseOptions(process.argv.slice(2));
  } catch (e) {
    // commander already printed help / version / the usage error
    if (e instanceof CommanderError) return e.exitCode === 0 ? 0 : 2;
    if (e instanceof UsageError) {
      log(e.message);
      return 2;
    }
    throw e;
  }
  if (o.exec !== undefined) return execMode(o, o.exec);
  if (o.fromJson !== undefined) return render(o, readSaved(o.fromJson));
  return matrixMode(o);
}

const CHECKLIST = join(dirname(fileURLToPath(import.meta.url)), 'checklist.js');

/** One kernel: boot it, run the checklist inside, read its result (or describe why there is none). */
async function checkKernel(o: MatrixOptions, wanted: string): Promise<KernelResult> {
  let tree: KernelTree;
  let note: string | undefined;
  try {
    ({ tree, note } = kernelTree(o, wanted));
  } catch (err) {
    if (err instanceof KernelFetchError) return failedRow(wanted, err.message);
    throw err;
  }
  const pkg = tree.pkg;
  const chosen = note ? { package_note: note } : {};
  log(`${pkg}: booting (TCG, ${o.smp} vCPUs) and running the checklist`);
  const cmd = `node ${shQuote(CHECKLIST)} --kernel ${shQuote(pkg)} --exits ${o.exits} --checkout ${shQuote(o.checkout)} --out "$KT_OUT/result.json"`;
  const run = await runInGuest(tree, jobScript(cmd, o.cwd), bootOptions(o, pkg));
  const timing = { boot_s: run.bootS, checklist_s: run.jobS, wall_s: run.wallS, ...(run.retried ? { retried: run.retried } : {}), ...chosen };
  const raw = run.files['result.json'];
  if (raw && !run.failure) {
    try {
      return { ...(JSON.parse(raw) as KernelResult), ...timing };
    } catch {
      // fall through: a truncated result is a failed checklist
    }
  }
  const why = run.failure ?? `the checklist failed (exit ${run.status}): ${run.stderr.trim().split('\n').pop() ?? ''}`;
  return { ...failedRow(pkg, why), ...timing };
}

async function matrixMode(o: MatrixOptions): Promise<number> {
  try {
    cliOf(o.checkout);
  } catch (err) {
    throw new UsageError(`--checkout: ${(err as Error).message}`);
  }
  const t0 = performance.now();
  const results: KernelResult[] = [];
  if (o.host) {
    log('host: running the checklist on the running kernel');
    const h0 = performance.now();
    results.push({ ...(await runChecklist('host', o.exits, o.checkout)), wall_s: (performance.now() - h0) / 1000 });
  }
  for (const pkg of o.kernels) {
    const r = await checkKernel(o, pkg);
    log(`${pkg}: ${kernelOk(r) ? 'pass' : 'FAIL'} (boot ${r.boot_s?.toFixed(1) ?? '?'} s, checklist ${r.checklist_s?.toFixed(1) ?? '?'} s, total ${r.wall_s?.toFixed(1) ?? '?'} s)`);
    results.push(r);
  }
  return render(o, { ok: results.every(kernelOk), wall_s: (performance.now() - t0) / 1000, kernels: results });
}

interface MatrixOutput {
  ok: boolean;
  wall_s: number;
  kernels: KernelResult[];
}

function render(o: MatrixOptions, out: MatrixOutput): number {
  if (o.json) process.stdout.write(`${JSON.stringify(out)}\n`);
  else if (o.markdown) process.stdout.write(markdownTable(out.kernels, repoRoot));
  else process.stdout.write(textTable(out.kernels));
  return out.kernels.every(kernelOk) ? 0 : 1;
}

function readSaved(file: string): MatrixOutput {
  let out: MatrixOutput;
  try {
    out = JSON.parse(readFileSync(file, 'utf8')) as MatrixOutput;
  } catch (err) {
    throw new UsageError(`cannot read ${file} as a saved --json run: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  if (!Array.isArray(out?.kernels) || out.kernels.length === 0) throw new UsageError(`${file} is not a saved --json run (no "kernels")`);
  return out;
}

for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.on(sig, () => {
    killAllGuests();
    log(`${sig}: QEMU stopped`);
    process.exit(130);
  });
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    killAllGuests();
    log(err instanceof KernelFetchError || err instanceof UsageError ? err.message : `failed: ${(err as Error).message ?? String(err)}`);
    process.exit(err instanceof UsageError ? 2 : 1);
  },
);
