/**
 * Prove that a strategy's programs pass the kernel's verifier without attaching them: open the prebuilt
 * object, autoload only those programs, load, close. Kernels that cannot attach kprobes (this host:
 * CONFIG_KPROBES unset) still verify kprobe programs; fentry programs are refused before verification
 * here (EPERM), which is reported as NotSupportedError, not as a failure of the programs.
 */
import { NotSupportedError, SyscallError } from '../ffi/errors.js';
import {
  closeObject,
  loadObject,
  objectPrograms,
  openObjectFile,
  programFd,
  programName,
  setLibbpfLogger,
  setProgramAutoload,
} from '../ffi/libbpf.js';
import { prebuiltObjectPath } from './paths.js';
import { BASE_PROGRAMS, type Strategy, strategyPrograms } from './programs.js';
import { BpfLoadError } from './load-errors.js';
import { writeRodata } from './object-setup.js';

export interface VerifyResult {
  strategy: Strategy;
  /** Programs the kernel accepted (each had an fd after load). */
  loaded: string[];
}

/**
 * Load (no attach) the programs a strategy adds to the base set — or the base set for `tracepoint`.
 * `rdonlyCast` picks the object's kernel-pointer loads: bpf_rdonly_cast (6.2+) or CO-RE reads (default).
 */
export function verifyStrategyPrograms(strategy: Strategy, opts: { objectPath?: string; rdonlyCast?: boolean } = {}): VerifyResult {
  const wanted =
    strategy === 'tracepoint'
      ? [...BASE_PROGRAMS]
      : strategyPrograms(strategy).filter((n) => !(BASE_PROGRAMS as readonly string[]).includes(n));
  const log: string[] = [];
  setLibbpfLogger((_l, m) => log.push(m));
  const path = opts.objectPath ?? prebuiltObjectPath();
  const obj = openObjectFile(path);
  try {
    writeRodata(obj, { pids: [], wakeupBytes: 0, aggregate: false, rdonlyCast: opts.rdonlyCast === true });
    const progs = objectPrograms(obj);
    for (const p of progs) setProgramAutoload(p, wanted.includes(programName(p)));
    try {
      loadObject(obj);
    } catch (err) {
      const refusedEarly = err instanceof SyscallError && err.errno === 1 && !log.some((l) => l.includes('PROG LOAD LOG'));
      if (refusedEarly) {
        throw new NotSupportedError(`${strategy} programs are refused by this kernel before verification (EPERM)`, {
          cause: err,
        });
      }
      throw new BpfLoadError(`verifying the ${strategy} programs failed: ${(err as Error).message}`, log.join('\n'), {
        cause: err,
      });
    }
    const loaded = progs.filter((p) => programFd(p) >= 0).map(programName);
    return { strategy, loaded };
  } finally {
    closeObject(obj);
    setLibbpfLogger(null);
  }
}
