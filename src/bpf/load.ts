/**
 * Open → configure → autoload → load the BPF object, retrying without a copy-hook program whose load
 * fails: libbpf 1.1 loads an object's programs all or nothing, and one hook the kernel refuses (its
 * program type, its attach target) must not take the tracer down. The base programs failing is the
 * tracer's failure: BpfLoadError with libbpf's log (the verifier's included).
 *
 * loadQuietAsync is the first try of an attach that has other work to do meanwhile: the load runs on a
 * worker thread with libbpf silent; if it fails, loadWithRetry does it again with the log, which names what
 * failed and drops a refused hook program.
 */
import {
  type BpfObjectPtr,
  type BpfProgramPtr,
  closeObject,
  loadObject,
  loadObjectAsync,
  openObjectFile,
  pauseLibbpfLog,
} from '../ffi/libbpf.js';
import { type HookPlan, dropFailedHook } from './hooks.js';
import { BpfLoadError, verifierTail } from './load-errors.js';
import { selectPrograms } from './object-setup.js';

export interface LoadedObject<T> {
  obj: BpfObjectPtr;
  /** Every program of the object by name (loaded or not). */
  progs: Map<string, BpfProgramPtr>;
  /** What configure() returned for the object that loaded. */
  configured: T;
}

/**
 * `wanted()` is asked again on every try (the plan's notLoaded grows); `configure` runs on each freshly
 * opened object before load (rodata, map sizes). At most one retry per hook program.
 */
export function loadWithRetry<T>(
  path: string,
  plan: HookPlan,
  wanted: () => string[],
  libbpfLog: string[],
  log: (line: string) => void,
  configure: (obj: BpfObjectPtr) => T,
): LoadedObject<T> {
  for (;;) {
    const obj = openObjectFile(path);
    const from = libbpfLog.length;
    try {
      const configured = configure(obj);
      const progs = selectPrograms(obj, wanted());
      try {
        loadObject(obj);
      } catch (err) {
        const dropped = dropFailedHook(plan, libbpfLog.slice(from));
        if (dropped) {
          log(`${dropped} cannot load here (${plan.notLoaded.get(dropped)}): loading without it`);
          closeObject(obj);
          continue;
        }
        for (const line of verifierTail(libbpfLog)) log(line);
        throw new BpfLoadError(`loading ${path} failed: ${(err as Error).message}`, libbpfLog.join('\n'), { cause: err });
      }
      return { obj, progs, configured };
    } catch (err) {
      closeObject(obj);
      throw err;
    }
  }
}

/**
 * Open → configure → load on a worker thread, libbpf's log silenced. Everything up to the load runs before
 * this returns its promise, so the caller may do other work while the kernel verifies. Resolves with the
 * loaded object, or undefined (object closed again) when the load failed: then call loadWithRetry.
 */
export async function loadQuietAsync<T>(
  path: string,
  wanted: string[],
  configure: (obj: BpfObjectPtr) => T,
): Promise<LoadedObject<T> | undefined> {
  const obj = openObjectFile(path);
  let loaded = false;
  try {
    const configured = configure(obj);
    const progs = selectPrograms(obj, wanted);
    const resume = pauseLibbpfLog();
    let r: number;
    try {
      r = await loadObjectAsync(obj);
    } finally {
      resume();
    }
    loaded = r >= 0;
    return loaded ? { obj, progs, configured } : undefined;
  } finally {
    if (!loaded) closeObject(obj);
  }
}
