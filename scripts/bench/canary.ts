/**
 * Knowing when a system-wide tracer really sees events: bpftrace prints "Attaching N probes..." before its
 * probes are live, and BEGIN runs before they are attached. So the bench itself makes a harmless KVM ioctl
 * (KVM_GET_API_VERSION on /dev/kvm) every few milliseconds until the tracer's output shows it — the first
 * event it could have missed is behind us, and attach time is measured to that moment.
 */
import { open, close, ioctlVal, O_RDWR, O_CLOEXEC } from '../../src/ffi/libc.js';
import { io, KVMIO } from '../../src/kvm/abi/ioc.js';

const KVM_GET_API_VERSION = io(KVMIO, 0x00);

/** Repeats a KVM ioctl from this process until `seen()` is true. Returns seconds waited; throws on timeout. */
export async function pokeUntil(seen: () => boolean, timeoutMs: number, everyMs = 20, aborted?: () => string | null): Promise<number> {
  const t0 = performance.now();
  const fd = open('/dev/kvm', O_RDWR | O_CLOEXEC);
  try {
    for (;;) {
      ioctlVal(fd, KVM_GET_API_VERSION, 0, 'KVM_GET_API_VERSION');
      await new Promise((r) => setTimeout(r, everyMs));
      if (seen()) return (performance.now() - t0) / 1000;
      const why = aborted?.();
      if (why) throw new Error(why);
      if (performance.now() - t0 > timeoutMs) throw new Error(`the tracer showed no event within ${timeoutMs / 1000} s`);
    }
  } finally {
    close(fd);
  }
}
