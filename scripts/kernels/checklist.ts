/**
 * The checklist, run inside each kernel (or here, for the host row) through kvm-trace's own CLI, as a user
 * would: `demo --json` against the reference guest's ground truth, the capture's observed vs derived copies
 * and the copy rules checked against the observed ones (rule-check.ts; plus a capture of a few ioctls the
 * guest does not issue, made by this script's own build: extra-ioctls.ts), `abi --check`, a cross-check of
 * the BTF reader with bpftool, and `attach` stopped by SIGINT with the BPF objects listed before, during
 * and after (bpf-objects.ts), and hardware exits with --hw-exits (hw-check.ts). Writes one KernelResult as JSON.
 *
 *   node dist/scripts/kernels/checklist.js --out FILE [--exits N] [--kernel NAME] [--checkout DIR]
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { release, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { TraceRecord } from '../../src/decode/records.js';
import { countIds, describeIds, processBpfIds, remainingAfter, type BpfIdSet } from './bpf-objects.js';
import { attachedCopyHooks, hooksFromJson, parseStrategyLines, type Hooks } from './hooks.js';
import type { DemoStats, KernelResult, KvmInfo } from './result.js';
import { checkCopyRules, mergeRuleChecks, ruleCoverage, type RuleCheck } from './rule-check.js';
import { runExtraIoctls } from './extra-ioctls.js';
import { btfCrossCheck, kernelTypes } from './btf-check.js';
import { hwExitCheck } from './hw-check.js';
import { repoRoot } from '../bench/paths.js';

/** The CLI as a user runs it: the `kvm-trace` bin of a checkout (this one by default). */
export function cliOf(checkout: string): string {
  let pkg: { name?: string; bin?: Record<string, string> };
  try {
    pkg = JSON.parse(readFileSync(join(checkout, 'package.json'), 'utf8')) as typeof pkg;
  } catch {
    throw new Error(`${checkout} is not a kvm-trace checkout (no readable package.json)`);
  }
  const bin = pkg.bin?.['kvm-trace'];
  if (pkg.name !== 'kvm-trace' || !bin) throw new Error(`${checkout} is not a kvm-trace checkout`);
  const cli = join(checkout, bin);
  if (!existsSync(cli)) throw new Error(`${cli} does not exist: build that checkout first (npm run build)`);
  return cli;
}

function arg(name: string, def?: string): string | undefined {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : def;
}

export function kvmInfo(): KvmInfo {
  const vendor = ['kvm_amd', 'kvm_intel'].find((m) => existsSync(`/sys/module/${m}`)) ?? null;
  const dev = existsSync('/dev/kvm');
  const kvm = existsSync('/sys/module/kvm/initstate') ? 'module' : dev ? 'built-in' : 'absent';
  return { dev, kvm, vendor, module_btf: existsSync('/sys/kernel/btf/kvm'), kprobes: existsSync('/sys/bus/event_source/devices/kprobe') };
}

function cli(CLI: string, args: string[], timeoutS: number): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', timeout: timeoutS * 1000, killSignal: 'SIGINT', maxBuffer: 1 << 28 });
  const stderr = r.error ? `${r.stderr ?? ''}\n${(r.error as NodeJS.ErrnoException).code ?? r.error.message}` : r.stderr;
  return { status: r.status, stdout: r.stdout ?? '', stderr };
}

/** The last line that says something (the one-line error of a failing command). */
const lastLine = (text: string): string => text.trim().split('\n').filter(Boolean).pop()?.replace(/^kvm-trace:\s*/, '') ?? '';

function readRecords(file: string): TraceRecord[] {
  if (!existsSync(file)) return [];
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => JSON.parse(l) as TraceRecord);
}

/**
 * `kvm-trace attach` (every process) until it says it attached; note the BPF ids it holds (fdinfo); stop it
 * with SIGINT as a user would; then which of those ids the kernel still has.
 */
function attachAndStop(CLI: string): Promise<{ during: number; leaked: BpfIdSet; detail: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [CLI, 'attach', '-q', '--json', '--verbose'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    let held: BpfIdSet = { prog: [], map: [], link: [] };
    let stopped = false;
    const stop = (): void => {
      if (stopped) return;
      stopped = true;
      held = processBpfIds(child.pid!);
      child.kill('SIGINT');
      setTimeout(() => child.kill('SIGKILL'), 60_000).unref();
    };
    const giveUp = setTimeout(stop, 180_000);
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
      if (/attached: \d+ program/.test(stderr)) stop();
    });
    child.on('close', (code, signal) => {
      clearTimeout(giveUp);
      const how = stopped ? `attach stopped by SIGINT (exit ${code ?? signal})` : `attach exited by itself (${code ?? signal}): ${lastLine(stderr)}`;
      void remainingAfter(held, 20_000).then((leaked) => resolve({ during: countIds(held), leaked, detail: how, stderr }));
    });
  });
}

/** libbpf's own words for a failed load (attach --verbose), e.g. "extern (func ksym) 'x': not found …". */
export function libbpfCause(stderr: string): string | undefined {
  const lines = stderr.split('\n').map((l) => l.replace(/^kvm-trace:\s*/, ''));
  return lines
    .filter((l) => l.startsWith('libbpf:') && /not found|failed|error|invalid|refused|-E[A-Z]+|\bE[A-Z]{3,}\b/i.test(l) && !/failed to load object/.test(l))
    .pop();
}

function demoStats(o: Record<string, any>): DemoStats {
  const runs = (o.ground_truth?.kvm_run ?? []) as Array<{ ok: boolean; kernel_addr: string | null }>;
  return {
    issued: o.issued,
    captured: o.captured,
    matched: o.matched,
    lost: o.lost,
    precision: o.flags?.precision,
    recall: o.flags?.recall,
    kvm_run_ok: runs.length > 0 && runs.every((r) => r.ok && !!r.kernel_addr),
    perfect: !!o.perfect,
  };
}

function demoError(run: { status: number | null; stderr: string }, attachStderr: string): string {
  const why = lastLine(run.stderr) || `demo exited ${run.status}`;
  const cause = libbpfCause(attachStderr);
  return cause ? `${why} (${cause})` : why;
}

export async function runChecklist(kernel: string, exits: number, checkout = repoRoot): Promise<KernelResult> {
  const CLI = cliOf(checkout);
  const kvm = kvmInfo();
  const work = mkdtempSync(join(tmpdir(), 'kt-check-'));
  try {
    const demoRun = cli(CLI, ['demo', '--json', '--exits', String(exits), '--vcpus', '2', '--out', work], 900);
    let demoJson: Record<string, any> | undefined;
    try {
      demoJson = JSON.parse(demoRun.stdout.trim().split('\n').pop() || 'null') ?? undefined;
    } catch {
      demoJson = undefined;
    }
    const records = readRecords(join(work, 'capture.jsonl'));
    const summary = records.find((r) => r.type === 'summary') as Record<string, any> | undefined;
    const lines = parseStrategyLines(demoRun.stderr);
    const hooks: Hooks = hooksFromJson(summary, demoJson) ?? lines.dropped;
    const flags = records.flatMap((r) => (r.type === 'ioctl' ? (r.flags ?? []) : []));
    const types = kernelTypes();
    let rules: RuleCheck = types.types
      ? checkCopyRules(records, { types: types.types, lookup: types.lookup })
      : { compared_calls: 0, mismatches: 0, details: [`kernel BTF unreadable: ${types.error}`], hooks: [], by_ioctl: {} };
    // The copy rules of ioctls the reference guest does not issue, compared the same way.
    let extraCalls: string[] = [];
    if (types.types && demoJson) {
      try {
        const extra = await runExtraIoctls(types.types);
        extraCalls = extra.calls;
        rules = mergeRuleChecks(rules, checkCopyRules(extra.records, { types: types.types, lookup: types.lookup }));
      } catch (err) {
        extraCalls = [`extra ioctls failed: ${(err as Error).message}`];
      }
    }
    const totals = summary?.flags as { observed?: number; derived?: number } | undefined;

    const abi = cli(CLI, ['abi', '--check'], 300);
    const attach = await attachAndStop(CLI);
    const leakedCount = countIds(attach.leaked);
    const hw = await hwExitCheck(CLI, Math.max(500, exits));
    return {
      kernel,
      release: release(),
      kvm,
      strategy: demoJson?.strategy ?? summary?.strategy ?? 'none',
      strategy_reason: lines.reason ?? lastLine(demoRun.stderr),
      hooks,
      programs_attached: lines.programs ?? null,
      copy_hooks: attachedCopyHooks(hooks),
      demo: demoJson ? demoStats(demoJson) : null,
      ...(demoJson ? {} : { demo_error: demoError(demoRun, attach.stderr) }),
      // The capture's own counts (its summary), else the flags the records carry.
      observed_copies: totals?.observed ?? flags.filter((f) => f.source === 'observed').length,
      derived_copies: totals?.derived ?? flags.filter((f) => f.source === 'derived').length,
      unknown_copies: Number(summary?.flags?.unknown ?? 0),
      rule_mismatches: rules.mismatches,
      rule_compared_calls: rules.compared_calls,
      rule_details: rules.details,
      rule_hooks: rules.hooks,
      rule_by_ioctl: rules.by_ioctl,
      rule_coverage: ruleCoverage(rules.by_ioctl),
      rule_extra_calls: extraCalls,
      btf_check: btfCrossCheck(kvm.module_btf),
      abi_check: abi.status === 0 ? 'ok' : lastLine(abi.stderr) || `exit ${abi.status}`,
      leaked_bpf_objects: leakedCount,
      bpf_objects_while_attached: attach.during,
      teardown_detail: `${attach.detail}; it held ${attach.during} BPF objects, ${leakedCount} left${leakedCount ? ` (${describeIds(attach.leaked)})` : ''}`,
      hw_exits: hw,
    };
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

// The bin part: only when run as a script (the host row imports runChecklist).
if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const out = arg('--out');
  runChecklist(arg('--kernel', 'host')!, Number(arg('--exits', '20')), arg('--checkout', repoRoot)).then(
    (r) => {
      const json = JSON.stringify(r);
      if (out) writeFileSync(out, `${json}\n`);
      else process.stdout.write(`${json}\n`);
    },
    (err: unknown) => {
      process.stderr.write(`checklist: ${(err as Error).stack ?? String(err)}\n`);
      process.exit(1);
    },
  );
}
