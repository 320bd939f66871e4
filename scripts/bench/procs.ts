/**
 * Every process the benchmark starts goes through here, so none can outlive it: each child leads its own
 * process group (a wrapper such as strace takes its traced workload down with it), tracers are stopped with
 * SIGINT first so they detach their probes and write their summary, and anything left is SIGKILLed on the
 * way out — on success, error, and the bench's own SIGINT/SIGTERM.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { openSync, closeSync } from 'node:fs';

export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface Tracked {
  name: string;
  pid: number;
  child: ChildProcess;
  /** performance.now() when spawned. */
  startedMs: number;
  /** Resolves once the process has exited (never rejects). */
  exited: Promise<Exit>;
  done: boolean;
  /** performance.now() when it exited (null while running). */
  exitedMs: number | null;
  /** Captured output (the last 256 KiB of each), unless redirected to a file. */
  stdout(): string;
  stderr(): string;
  /** Resolves when a line of `stream` matches `re`; rejects on timeout or when the process exits first. */
  waitFor(stream: 'stdout' | 'stderr', re: RegExp, timeoutMs: number): Promise<void>;
}

export interface SpawnOptions {
  /** 'pipe' to write to the child's stdin later (the workload gate). */
  stdin?: 'pipe' | 'ignore';
  /** Send stdout to this file instead of capturing it (chatty tracers). */
  stdoutFile?: string;
  env?: NodeJS.ProcessEnv;
  /** SIGINT before SIGKILL when the bench cleans up (tracers: detach and flush). */
  gentle?: boolean;
}

const CAPTURE_LIMIT = 256 * 1024;

function capped(prev: string, chunk: string): string {
  const s = prev + chunk;
  return s.length > CAPTURE_LIMIT ? s.slice(s.length - CAPTURE_LIMIT) : s;
}

export class ProcessSet {
  private readonly live = new Set<Tracked>();
  private readonly gentle = new WeakSet<Tracked>();

  spawn(name: string, cmd: string, args: string[], opts: SpawnOptions = {}): Tracked {
    const outFd = opts.stdoutFile ? openSync(opts.stdoutFile, 'w') : undefined;
    let child: ChildProcess;
    try {
      child = spawn(cmd, args, {
        stdio: [opts.stdin ?? 'ignore', outFd ?? 'pipe', 'pipe'],
        env: opts.env ?? process.env,
        detached: true, // own process group: the bench's terminal Ctrl-C is handled here, in order
      });
    } finally {
      if (outFd !== undefined) closeSync(outFd);
    }
    let out = '';
    let err = '';
    const watchers: Array<{ stream: 'stdout' | 'stderr'; re: RegExp; resolve: () => void }> = [];
    const check = (stream: 'stdout' | 'stderr', text: string): void => {
      for (const w of [...watchers]) {
        if (w.stream === stream && w.re.test(text)) {
          watchers.splice(watchers.indexOf(w), 1);
          w.resolve();
        }
      }
    };
    child.stdout?.setEncoding('utf8');
    child.stderr?.setEncoding('utf8');
    child.stdout?.on('data', (c: string) => {
      out = capped(out, c);
      check('stdout', out);
    });
    child.stderr?.on('data', (c: string) => {
      err = capped(err, c);
      check('stderr', err);
    });
    // A closed stdin (child exited before the gate opened) must not crash the bench.
    child.stdin?.on('error', () => {});
    const exited = new Promise<Exit>((resolve) => {
      child.on('error', (e) => {
        err = capped(err, `${name}: ${e.message}\n`);
        resolve({ code: 127, signal: null });
      });
      child.on('close', (code, signal) => resolve({ code, signal }));
    });
    const t: Tracked = {
      name,
      pid: child.pid ?? -1,
      child,
      startedMs: performance.now(),
      exited,
      done: false,
      exitedMs: null,
      stdout: () => out,
      stderr: () => err,
      waitFor: (stream, re, timeoutMs) =>
        new Promise<void>((resolve, reject) => {
          if (re.test(stream === 'stdout' ? out : err)) return resolve();
          const timer = setTimeout(() => {
            const i = watchers.indexOf(w);
            if (i >= 0) watchers.splice(i, 1);
            reject(new Error(`${name}: no ${re} on ${stream} within ${timeoutMs / 1000} s`));
          }, timeoutMs);
          const w = {
            stream,
            re,
            resolve: () => {
              clearTimeout(timer);
              resolve();
            },
          };
          watchers.push(w);
          void exited.then((x) => {
            if (watchers.includes(w)) {
              watchers.splice(watchers.indexOf(w), 1);
              clearTimeout(timer);
              reject(new Error(`${name} exited (${describeExit(x)}) before ${re} on ${stream}: ${lastLine(err)}`));
            }
          });
        }),
    };
    this.live.add(t);
    if (opts.gentle) this.gentle.add(t);
    void exited.then(() => {
      t.done = true;
      t.exitedMs = performance.now();
      this.live.delete(t);
    });
    return t;
  }

  /**
   * Stop one process: `signal` to its group, wait up to `graceMs`, then SIGKILL. Returns seconds from the
   * signal to the exit and whether it had to be killed.
   */
  async stop(t: Tracked, signal: NodeJS.Signals, graceMs: number): Promise<{ seconds: number; killed: boolean; exit: Exit }> {
    const t0 = performance.now();
    if (!t.done) signalGroup(t.pid, signal);
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<null>((r) => (timer = setTimeout(() => r(null), graceMs)));
    let exit = await Promise.race([t.exited, timedOut]);
    clearTimeout(timer);
    const seconds = (performance.now() - t0) / 1000;
    if (exit) return { seconds, killed: false, exit };
    signalGroup(t.pid, 'SIGKILL');
    exit = await t.exited;
    return { seconds, killed: true, exit };
  }

  /** Stop everything still running: tracers gently (SIGINT, so they detach), the rest with SIGKILL. */
  async stopAll(graceMs = 5000): Promise<void> {
    const all = [...this.live];
    await Promise.all(all.map((t) => this.stop(t, this.gentle.has(t) ? 'SIGINT' : 'SIGKILL', graceMs)));
  }

  /** Last resort from a synchronous 'exit' handler: SIGKILL every group still alive. */
  killAllSync(): void {
    for (const t of this.live) signalGroup(t.pid, 'SIGKILL');
  }
}

function signalGroup(pid: number, signal: NodeJS.Signals): void {
  if (pid <= 0) return;
  try {
    process.kill(-pid, signal);
  } catch {
    try {
      process.kill(pid, signal);
    } catch {
      // already gone
    }
  }
}

export function describeExit(x: Exit): string {
  return x.signal ? `signal ${x.signal}` : `exit code ${x.code}`;
}

/** The last non-empty line of some output, for one-line error messages. */
export function lastLine(text: string): string {
  const lines = text.split('\n').map((l) => l.trim()).filter(Boolean);
  return lines[lines.length - 1] ?? '(no output)';
}
