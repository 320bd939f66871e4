/**
 * kvm-trace's BPF side, user half: the public entry for the capture session and the CLI.
 *
 *   const tracer = KvmTracer.open({ pids: [1234], strategy: 'auto', log: (l) => stderr.write(l + '\n') });
 *   // consume tracer.ringMapFd / tracer.ringBytes with src/ringbuf's RingBufferConsumer …
 *   tracer.hooks;     // per copy hook: { hook, attached, program?, reason }
 *   tracer.stats();   // { lost, events, noEnter, stateUnavailable } summed over CPUs
 *   tracer.close();   // idempotent; destroys every link, closes the object
 *
 * Programs per strategy live in programs.ts; feature probes in features.ts; preflight and strategy choice in
 * strategy.ts; configuring the object in object-setup.ts; tracefs mounting in tracefs.ts; verifier-only loads
 * in verify.ts. The BPF object itself is bpf/kvm_trace.bpf.c (+ one bpf/kt_*.bpf.h per concern), prebuilt
 * in bpf/prebuilt/.
 */
export { KvmTracer, DEFAULT_RING_BYTES } from './tracer.js';
export { BpfLoadError } from './load-errors.js';
export { chooseStrategy, preflight } from './strategy.js';
export type { TracerOptions, TracerStats, BpfIds, ProgramRuntime, HookResult } from './tracer.js';
export { probeFeature, clearFeatureCache } from './features.js';
export type { FeatureAnswer, FeatureName, FeatureStatus } from './features.js';
export { STRATEGIES, BASE_PROGRAMS, COPY_HOOKS, KPROBE_PROGRAMS, FENTRY_PROGRAMS, strategyPrograms } from './programs.js';
export type { Strategy, StrategyOption, CopyHook, HookFamily } from './programs.js';
export { ensureTracefs, tracefsDir } from './tracefs.js';
export { verifyStrategyPrograms } from './verify.js';
export type { VerifyResult } from './verify.js';
export { prebuiltObjectPath } from './paths.js';
export { kernelBpfIds } from '../ffi/libbpf.js';
export type { BpfIdKind } from '../ffi/libbpf.js';
