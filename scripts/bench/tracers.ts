/**
 * The tracers compared, and how each is started:
 *  - 'attach':  kvm-trace attach -p PID, started before the workload's first ioctl, ready at "attached";
 *  - 'wrap':    strace / perf trace run the workload as their child (how people use them);
 *  - 'system':  bpftrace one-liners, system-wide, ready once they print the bench's own canary ioctl.
 * A tracer that is missing is not an error: it is reported with the reason (and how to get it).
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { cliMain } from './paths.js';
import { cliHasCommand, cliHelp } from './workloads.js';

export type TracerId = 'untraced' | 'kvm-trace' | 'kvm-trace-lean' | 'kvm-trace-binary' | 'kvm-trace-aggregate' | 'kvm-trace-top' | 'strace' | 'perf-trace' | 'bpftrace' | 'bpftrace-count';
export const PEER_IDS: TracerId[] = ['strace', 'perf-trace', 'bpftrace', 'bpftrace-count'];

export const READY_MARK = 'kvm-bench-ready';

export interface Tracer {
  id: TracerId;
  label: string;
  style: 'none' | 'attach' | 'wrap' | 'system';
  peer: boolean;
  /** null when it can run; else why not. */
  unavailable: string | null;
  /** 'wrap': argv before the workload's argv. */
  wrapArgv?: (outFile: string) => string[];
  /** 'attach': argv attaching to `pid`, writing to `outFile`. */
  attachArgv?: (pid: number, outFile: string) => string[];
  /** 'system': argv; stdout goes to a file, which shows READY_MARK once an ioctl of `canaryPid` was seen. */
  systemArgv?: (canaryPid: number) => string[];
  /** kvm-trace only: it prints a summary with events and lost records. */
  hasSummary?: boolean;
}

function runs(cmd: string, args: string[]): boolean {
  const r = spawnSync(cmd, args, { stdio: 'ignore', timeout: 20_000 });
  return r.status === 0;
}

const PEER_HINT = 'not installed (npm run bench -- --with-peers installs it)';

/** bpftrace: a KVM ioctl is one whose _IOC_TYPE byte is 0xAE (KVMIO); the canary `if` costs one compare. */
function bpftraceProgram(kind: 'printf' | 'count', canaryPid: number): string {
  const isKvm = '((args->cmd >> 8) & 0xff) == 0xae';
  const canary = `if (pid == ${canaryPid}) { printf("${READY_MARK}\\n"); }`;
  if (kind === 'count') {
    return `tracepoint:syscalls:sys_enter_ioctl /${isKvm}/ { @calls[comm, args->cmd] = count(); ${canary} }`;
  }
  return (
    `tracepoint:syscalls:sys_enter_ioctl /${isKvm}/ { @start[tid] = nsecs; @cmd[tid] = args->cmd; ${canary} } ` +
    `tracepoint:syscalls:sys_exit_ioctl /@start[tid]/ { ` +
    `printf("%d %d %s cmd=0x%x ret=%d lat_ns=%d\\n", pid, tid, comm, @cmd[tid], args->ret, nsecs - @start[tid]); ` +
    `delete(@start[tid]); delete(@cmd[tid]); }`
  );
}

/** Which attach option (if any) makes kvm-trace keep counters in the kernel instead of emitting records. */
export function aggregateFlag(attachHelp: string): string | null {
  for (const flag of ['--aggregate', '--count-only']) if (new RegExp(`${flag}\\b`).test(attachHelp)) return flag;
  return null;
}

/** cpuProfDir: run kvm-trace under `node --cpu-prof`, profiles written there. */
export function discoverTracers(cpuProfDir: string | null = null): Tracer[] {
  const hasAttach = cliHasCommand('attach');
  const attachHelp = hasAttach ? cliHelp('attach') : '';
  const agg = aggregateFlag(attachHelp);
  const noAttach = existsSync(cliMain)
    ? 'kvm-trace attach is not built yet (no "attach" in kvm-trace --help)'
    : 'dist/src/cli/main.js missing (run npx tsc -p .)';
  // 10 ms samples, not V8's 1 ms: the profiler's SIGPROF interrupts the verifier inside BPF_PROG_LOAD, which
  // then fails with EAGAIN more often than libbpf retries it (seen here at 1 ms; fine at 5 ms and above).
  const nodeFlags = cpuProfDir ? ['--cpu-prof', `--cpu-prof-dir=${cpuProfDir}`, '--cpu-prof-interval', '10000'] : [];
  const kvmTrace = (extra: string[], output = '-o') => (pid: number, outFile: string) => [
    process.execPath,
    ...nodeFlags,
    cliMain,
    'attach',
    '-p',
    String(pid),
    output,
    outFile,
    '-q',
    '--json',
    ...extra,
  ];
  // top reads the same kernel aggregate once per interval and prints one JSON line: no -o, no summary.
  const topArgv = (pid: number): string[] => [process.execPath, ...nodeFlags, cliMain, 'top', '-p', String(pid), '--log', '1', '--json'];
  const haveStrace = runs('strace', ['-V']);
  const havePerf = runs('perf', ['version']);
  const haveBpftrace = runs('bpftrace', ['--version']);
  return [
    { id: 'untraced', label: 'untraced', style: 'none', peer: false, unavailable: null },
    {
      id: 'kvm-trace',
      label: 'kvm-trace attach -o FILE',
      style: 'attach',
      peer: false,
      unavailable: hasAttach ? null : noAttach,
      attachArgv: kvmTrace([]),
      hasSummary: true,
    },
    {
      // --lean: still one record per ioctl, without argument decoding (what a user picks for less cost).
      id: 'kvm-trace-lean',
      label: 'kvm-trace attach -o FILE --lean',
      style: 'attach',
      peer: false,
      unavailable: !hasAttach ? noAttach : /--lean\b/.test(attachHelp) ? null : 'not offered (no --lean in attach --help)',
      attachArgv: kvmTrace(['--lean']),
      hasSummary: true,
    },
    {
      // -w: the raw records into a binary capture, decoded later (kvm-trace decode): one copy per record.
      id: 'kvm-trace-binary',
      label: 'kvm-trace attach -w FILE (binary capture)',
      style: 'attach',
      peer: false,
      unavailable: !hasAttach ? noAttach : /--write\b/.test(attachHelp) ? null : 'not offered (no --write in attach --help)',
      attachArgv: kvmTrace([], '-w'),
      hasSummary: true,
    },
    {
      id: 'kvm-trace-aggregate',
      label: `kvm-trace attach ${agg ?? '(aggregate)'}`,
      style: 'attach',
      peer: false,
      unavailable: !hasAttach ? noAttach : agg ? null : 'not offered (attach --help lists neither --aggregate nor --count-only)',
      attachArgv: kvmTrace(agg ? [agg] : []),
      hasSummary: true,
    },
    {
      id: 'kvm-trace-top',
      label: 'kvm-trace top --log 1 --json (kernel aggregate read every second)',
      style: 'attach',
      peer: false,
      unavailable: cliHasCommand('top') ? null : 'not offered (no "top" in kvm-trace --help)',
      attachArgv: (pid) => topArgv(pid),
    },
    {
      id: 'strace',
      label: 'strace -f -e trace=ioctl',
      style: 'wrap',
      peer: true,
      unavailable: haveStrace ? null : `strace ${PEER_HINT}`,
      wrapArgv: (out) => ['strace', '-f', '-e', 'trace=ioctl', '-o', out, '--'],
    },
    {
      id: 'perf-trace',
      label: 'perf trace -e ioctl',
      style: 'wrap',
      peer: true,
      unavailable: havePerf ? null : `perf (linux-perf) ${PEER_HINT}`,
      wrapArgv: (out) => ['perf', 'trace', '-e', 'ioctl', '-o', out, '--'],
    },
    {
      id: 'bpftrace',
      label: 'bpftrace enter+exit, printf each KVM ioctl',
      style: 'system',
      peer: true,
      unavailable: haveBpftrace ? null : `bpftrace ${PEER_HINT}`,
      systemArgv: (canary) => ['bpftrace', '-B', 'line', '-e', bpftraceProgram('printf', canary)],
    },
    {
      id: 'bpftrace-count',
      label: 'bpftrace in-kernel count only',
      style: 'system',
      peer: true,
      unavailable: haveBpftrace ? null : `bpftrace ${PEER_HINT}`,
      systemArgv: (canary) => ['bpftrace', '-B', 'line', '-e', bpftraceProgram('count', canary)],
    },
  ];
}

/**
 * perf trace and bpftrace find syscall tracepoints through tracefs, which is not mounted at boot here
 * (../shared/HOST.md). Mount it when root and missing; it stays mounted (kvm-trace mounts it too).
 * Returns a note for the report, or null when nothing was done.
 */
export function ensureTracefs(): string | null {
  const dir = '/sys/kernel/tracing';
  if (existsSync(`${dir}/events`)) return null;
  if (process.getuid?.() !== 0) return `tracefs not mounted at ${dir} and not root: perf trace / bpftrace may fail`;
  mkdirSync(dir, { recursive: true });
  const r = spawnSync('mount', ['-t', 'tracefs', 'nodev', dir], { encoding: 'utf8' });
  if (r.status !== 0) return `mounting tracefs failed: ${(r.stderr || '').trim()}`;
  return `mounted tracefs at ${dir} (needed by perf trace and bpftrace)`;
}
