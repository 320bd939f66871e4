/** Small helpers of the OpenTelemetry sink: bounded waiting, one-line error text, the package version. */
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** Resolves 'done' when `p` settles (rejections count as done) or 'timeout' after `ms`, whichever is first. */
export function withDeadline(p: Promise<unknown>, ms: number): Promise<'done' | 'timeout'> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve('timeout'), ms);
    // The deadline must not keep the process alive by itself.
    timer.unref();
    p.then(
      () => {
        clearTimeout(timer);
        resolve('done');
      },
      () => {
        clearTimeout(timer);
        resolve('done');
      },
    );
  });
}

/** The message of an error (and its code / cause), on one line. */
export function oneLineError(err: unknown): string {
  if (!err) return 'unknown error';
  const parts: string[] = [];
  let e: unknown = err;
  for (let depth = 0; e && depth < 3; depth++) {
    const code = (e as { code?: unknown }).code;
    const msg = e instanceof Error ? e.message : String(e);
    // Network errors carry a string code (ECONNREFUSED); OTLP HTTP errors a numeric status.
    const tag = typeof code === 'string' ? code : typeof code === 'number' ? `HTTP ${code}` : '';
    const text = tag && !msg.includes(tag) ? (msg ? `${tag}: ${msg}` : tag) : msg;
    if (text && !parts.some((p) => p.includes(text))) parts.push(text);
    e = e instanceof Error ? e.cause : undefined;
  }
  // AggregateError (e.g. ECONNREFUSED on both ::1 and 127.0.0.1) may have an empty message: use its first error.
  if (parts.length === 0 && err instanceof AggregateError && err.errors.length) return oneLineError(err.errors[0]);
  return parts.filter(Boolean).join(': ').replace(/\s*\n\s*/g, ' ') || 'unknown error';
}

/** kvm-trace's version from package.json (src/… and dist/src/… both sit below the package root). */
export function packageVersion(): string {
  if (cachedVersion !== undefined) return cachedVersion;
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++) {
    try {
      const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { name?: string; version?: string };
      if (pkg.name === 'kvm-trace' && pkg.version) return (cachedVersion = pkg.version);
    } catch {
      // not here: keep climbing
    }
    dir = dirname(dir);
  }
  return (cachedVersion = '0.0.0');
}
let cachedVersion: string | undefined;

/**
 * One warning line per cause for the whole sink: an unreachable collector fails both the span and the metric
 * exports, and the user needs to hear it once, not once per signal or per batch.
 */
export function warnOncePer(warn: (line: string) => void): (cause: string, line: string) => void {
  const said = new Set<string>();
  return (cause, line) => {
    if (said.has(cause)) return;
    said.add(cause);
    warn(line);
  };
}
