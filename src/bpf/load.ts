/**
 * Open → configure → autoload → load the BPF object, retrying without a copy-hook program whose load
 * fails: libbpf 1.1 loads an object's programs all or nothing, and one hook the kernel refuses (its
 * program type, its attach target) must not take the tracer down. The base programs failing is the
 * tracer's failure: BpfLoadError with libbpf's log (the verifier's included).
 */
import { type BpfObjectPtr, type BpfProgramPtr, closeObject, loadObject, openObjectFile } from '../ffi/libbpf.js';
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
