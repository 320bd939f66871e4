/**
 * libbpf's log hook. It receives a va_list; the message is formatted with libc's vasprintf (taking the
 * va_list as `void *`, which is what va_list decays to on x86_64) and handed to one JS handler.
 */
import koffi from 'koffi';
import { bindLibbpf } from './lib.js';

export const enum LibbpfLogLevel {
  Warn = 0,
  Info = 1,
  Debug = 2,
}

const libc = koffi.load('libc.so.6');
const c_vasprintf = libc.func('int vasprintf(_Out_ void **strp, void *fmt, void *ap)');
const c_free = libc.func('void free(void *p)');

const PrintFn = koffi.proto('int kt_libbpf_print_fn(int level, void *fmt, void *ap)');
const c = bindLibbpf({ set_print: 'void *libbpf_set_print(kt_libbpf_print_fn *fn)' });

/** Receives each formatted libbpf message (its "libbpf: " prefix and trailing newline removed). */
export type LibbpfLogger = (level: LibbpfLogLevel, message: string) => void;
let logger: LibbpfLogger | null = null;
let printCallback: bigint | undefined;

function onPrint(level: number, fmt: bigint | null, ap: bigint | null): number {
  if (!logger || fmt === null || ap === null) return 0;
  const out: [bigint | null] = [null];
  const n = c_vasprintf(out, fmt, ap) as number;
  const p = out[0];
  if (n < 0 || p === null) return 0;
  let text: string;
  try {
    text = koffi.decode.string(p, n);
  } finally {
    c_free(p);
  }
  try {
    logger(level as LibbpfLogLevel, text.replace(/^libbpf: /, '').replace(/\n$/, ''));
  } catch {
    // A throwing logger must not unwind through libbpf's C frames.
  }
  return 0;
}

/**
 * Route libbpf's messages to `fn` (null: drop them, libbpf's default would print to stderr). The C
 * callback is registered once per process and stays installed; only the JS target changes.
 */
export function setLibbpfLogger(fn: LibbpfLogger | null): void {
  logger = fn;
  installHook();
}

function installHook(): bigint {
  if (printCallback === undefined) {
    printCallback = koffi.register(onPrint, koffi.pointer(PrintFn));
    c().set_print(printCallback);
  }
  return printCallback;
}

/**
 * Silence libbpf at the C level (no callback at all) until the returned function is called, which puts the
 * hook back. For calls made on a worker thread (loadObjectAsync): there the JS callback would block that
 * thread until the main thread is free. Whoever needs libbpf's words runs the call again with the hook.
 */
export function pauseLibbpfLog(): () => void {
  const hook = installHook();
  c().set_print(null);
  return () => {
    c().set_print(hook);
  };
}
