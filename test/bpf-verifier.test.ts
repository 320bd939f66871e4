// Programs that cannot attach on this kernel must still be proven to load: kprobe programs pass the
// verifier even with CONFIG_KPROBES unset; fentry programs are refused before verification here (EPERM),
// which is reported as "unsupported", not as an error. Feature probes give conclusive, cached answers.
import { describe, expect, it } from 'vitest';
import { NotSupportedError } from '../src/ffi/errors.js';
import { clearFeatureCache, probeFeature, type FeatureName } from '../src/bpf/features.js';
import { FENTRY_PROGRAMS, KPROBE_PROGRAMS, BASE_PROGRAMS } from '../src/bpf/programs.js';
import { ensureTracefs } from '../src/bpf/tracefs.js';
import { verifyStrategyPrograms } from '../src/bpf/verify.js';
import { bpfSkipReason } from './bpf-support.js';

const skip = bpfSkipReason(false);
if (skip) console.log(`bpf-verifier tests skipped: ${skip}`);

describe.skipIf(skip !== undefined)('verifier', () => {
  it('the tracepoint programs load with CO-RE reads of kernel pointers (what kernels before 6.2 run)', () => {
    expect(verifyStrategyPrograms('tracepoint', { rdonlyCast: false }).loaded).toEqual([...BASE_PROGRAMS]);
  });

  it('the tracepoint programs load with bpf_rdonly_cast where the kernel has it', () => {
    const cast = probeFeature('rdonly_cast');
    expect(cast.status, cast.detail).not.toBe('inconclusive');
    if (cast.status !== 'available') {
      console.log(`bpf_rdonly_cast path not verified: ${cast.detail}`);
      return;
    }
    expect(verifyStrategyPrograms('tracepoint', { rdonlyCast: true }).loaded).toEqual([...BASE_PROGRAMS]);
  });

  it('the kprobe programs pass the verifier wherever the kprobe program type loads', () => {
    // Loading a kprobe program needs no kprobe support at all; only attaching does.
    expect(probeFeature('kprobe').detail).toMatch(/^kprobe programs load/);
    expect(verifyStrategyPrograms('kprobe').loaded).toEqual([...KPROBE_PROGRAMS]);
  });

  it('the fentry programs load where fentry is available, and are reported unsupported where refused', () => {
    const fentry = probeFeature('fentry');
    expect(fentry.status).not.toBe('inconclusive');
    if (fentry.status === 'available') {
      expect(verifyStrategyPrograms('fentry').loaded).toEqual([...FENTRY_PROGRAMS]);
    } else {
      expect(() => verifyStrategyPrograms('fentry')).toThrow(NotSupportedError);
      expect(() => verifyStrategyPrograms('fentry')).toThrow(/refused by this kernel before verification/);
    }
  });
});

describe.skipIf(skip !== undefined)('feature probes', () => {
  it.each(['libbpf', 'btf', 'ringbuf', 'task_storage', 'tracepoint', 'kprobe', 'fentry', 'rdonly_cast'] as FeatureName[])(
    '%s gives a conclusive answer as root, and caches it',
    (name) => {
      ensureTracefs();
      clearFeatureCache();
      const a = probeFeature(name);
      expect(a.status, a.detail).not.toBe('inconclusive');
      expect(a.detail).not.toContain('\n');
      expect(probeFeature(name)).toBe(a); // the cached object
    },
  );

  it('what the BPF side needs is available here', () => {
    for (const name of ['libbpf', 'btf', 'ringbuf', 'task_storage', 'tracepoint'] as FeatureName[]) {
      expect(probeFeature(name).status, probeFeature(name).detail).toBe('available');
    }
  });
});
