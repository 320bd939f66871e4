/**
 * tracefs: libbpf attaches `tracepoint/…` programs by reading the event id from tracefs, and this machine
 * kind does not mount it at boot. When it is missing and we are root we mount it ourselves (and say so);
 * otherwise the caller gets one clear line instead of libbpf's ENOENT.
 *
 * libbpf 1.1 looks in /sys/kernel/debug/tracing when that exists (debugfs), else /sys/kernel/tracing.
 */
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { NotSupportedError } from '../ffi/errors.js';

export const TRACEFS = '/sys/kernel/tracing';
const DEBUGFS_TRACING = '/sys/kernel/debug/tracing';

/** The tracefs directory libbpf will use, when it is mounted (has an events/ directory). */
export function tracefsDir(): string | undefined {
  if (existsSync(DEBUGFS_TRACING)) return existsSync(`${DEBUGFS_TRACING}/events`) ? DEBUGFS_TRACING : undefined;
  return existsSync(`${TRACEFS}/events`) ? TRACEFS : undefined;
}

/** True when the tracepoint `category/name` exists (its id file is present). */
export function tracepointExists(category: string, name: string): boolean {
  const dir = tracefsDir();
  return dir !== undefined && existsSync(`${dir}/events/${category}/${name}/id`);
}

/**
 * Make sure tracefs is mounted; mount it at /sys/kernel/tracing when missing (root only). Returns the
 * directory. `log` hears about a mount we did.
 */
export function ensureTracefs(log: (line: string) => void = () => {}): string {
  const dir = tracefsDir();
  if (dir) return dir;
  if (process.getuid?.() !== 0) {
    throw new NotSupportedError(`tracefs is not mounted at ${TRACEFS} and mounting it needs root`);
  }
  try {
    execFileSync('mount', ['-t', 'tracefs', 'nodev', TRACEFS], { stdio: ['ignore', 'ignore', 'pipe'] });
  } catch (err) {
    const why = ((err as { stderr?: Buffer }).stderr?.toString() ?? String(err)).trim().split('\n')[0];
    throw new NotSupportedError(`tracefs is not mounted and \`mount -t tracefs nodev ${TRACEFS}\` failed: ${why}`);
  }
  const mounted = tracefsDir();
  if (!mounted) throw new NotSupportedError(`mounted tracefs at ${TRACEFS} but it has no events/ directory`);
  log(`mounted tracefs at ${TRACEFS} (libbpf needs it to attach tracepoints)`);
  return mounted;
}
