/**
 * Shared by the bpf tests: why this machine cannot run them (printed skip reason), a temporary ring drain
 * through libbpf's ring_buffer that parses records with the decoder's layout, and a tiny real-mode guest
 * (`mov dx,0x10; mov al,0x42; out dx,al; hlt`) driven through the project's Kvm/Vm/Vcpu classes.
 */
import { accessSync, constants, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { packageRoot } from '../src/bpf/paths.js';
import { kernelBpfIds, libbpfUnavailable, ringBufferNew, sampleView, type LibbpfRingBuffer } from '../src/ffi/libbpf.js';
import type { BpfIds } from '../src/bpf/tracer.js';
import { MAP_ANONYMOUS, MAP_SHARED, memoryView, mmap, munmap, PROT_READ, PROT_WRITE } from '../src/ffi/libc.js';
import { KT_EV_FD, KT_EV_IOCTL, KT_EV_MMAP } from '../src/bpf/event-layout.js';
import {
  parseFd,
  parseIoctl,
  parseMmap,
  recordType,
  type KtFdEvent,
  type KtIoctlEvent,
  type KtMmapEvent,
} from './helpers/kt-records.js';
import { Kvm } from '../src/kvm/system.js';
import { ioctlByName } from '../src/kvm/abi/ioctl-table.js';
import { STRUCTS } from '../src/kvm/abi/structs.js';
import { memberAt } from '../src/cdata/layout.js';
import { ioctlPtr } from '../src/ffi/libc.js';

/** Why the real-kernel bpf tests cannot run here, or undefined when they must run (and pass). */
export function bpfSkipReason(needKvm = true): string | undefined {
  if (process.getuid?.() !== 0) return 'not root: loading BPF programs needs root';
  const lib = libbpfUnavailable();
  if (lib) return lib;
  try {
    accessSync('/sys/kernel/btf/vmlinux', constants.R_OK);
  } catch {
    return 'no /sys/kernel/btf/vmlinux: kernel without BTF';
  }
  if (needKvm) {
    try {
      accessSync('/dev/kvm', constants.R_OK | constants.W_OK);
    } catch {
      return 'no usable /dev/kvm';
    }
  }
  return undefined;
}

export interface Drained {
  ioctls: (KtIoctlEvent & { pio: bigint; out: Uint8Array; in: Uint8Array })[];
  fds: KtFdEvent[];
  mmaps: KtMmapEvent[];
  other: number;
}

/** Collect every record of a ring (map fd) into plain objects; drain() consumes what is there now. */
export class RingCollector {
  readonly got: Drained = { ioctls: [], fds: [], mmaps: [], other: 0 };
  readonly #rb: LibbpfRingBuffer;

  constructor(mapFd: number) {
    this.#rb = ringBufferNew(mapFd, (data, size) => {
      const dv = new DataView(sampleView(data, size));
      const type = recordType(dv, 0, size);
      if (type === KT_EV_IOCTL) {
        const e = parseIoctl(dv, 0, size);
        if (!e) throw new Error(`short ioctl record (${size} bytes)`);
        // Copy what the test looks at: the view dies when the callback returns.
        const bytes = new Uint8Array(dv.buffer.slice(0));
        this.got.ioctls.push({
          ...e,
          view: new DataView(bytes.buffer),
          pio: dv.getBigUint64(e.pioDataOffset, true),
          in: bytes.slice(e.inOffset, e.inOffset + e.in_len),
          out: bytes.slice(e.outOffset, e.outOffset + e.out_len),
        });
      } else if (type === KT_EV_FD) {
        this.got.fds.push(parseFd(dv, 0, size)!);
      } else if (type === KT_EV_MMAP) {
        this.got.mmaps.push(parseMmap(dv, 0, size)!);
      } else {
        this.got.other++;
      }
    });
  }

  drain(): Drained {
    this.#rb.consume();
    return this.got;
  }

  /** Wait (epoll) up to timeoutMs for a kernel wakeup; the records consumed (0 on timeout). */
  poll(timeoutMs: number): number {
    return this.#rb.poll(timeoutMs);
  }

  free(): void {
    this.#rb.free();
  }
}

/** A numeric #define of bpf/kvm_trace.h (the shared layout header), e.g. KT_RUN_SNAP_SHORT. */
export function headerDefine(name: string): number {
  const text = readFileSync(join(packageRoot(), 'bpf', 'kvm_trace.h'), 'utf8');
  const m = new RegExp(`^#define ${name} (\\d+)`, 'm').exec(text);
  if (!m) throw new Error(`bpf/kvm_trace.h has no #define ${name}`);
  return Number(m[1]);
}

export const GUEST_PORT = 0x10;
export const GUEST_BYTE = 0x42;

export interface GuestRun {
  /** Exit reasons of the KVM_RUNs, in order. */
  exits: number[];
  vcpuFd: number;
  vmFd: number;
  kvmFd: number;
  kvmRunUserAddr: bigint;
  kvmRunSize: number;
}

const KVM_GUESTDBG_ENABLE = 0x1;
const KVM_GUESTDBG_SINGLESTEP = 0x2;

/** KVM_SET_GUEST_DEBUG with `control` (the Vcpu class has no method for it). */
function setGuestDebug(vcpuFd: number, control: number): void {
  const arg = Buffer.alloc(STRUCTS.kvm_guest_debug.size);
  arg.writeUInt32LE(control, memberAt(STRUCTS.kvm_guest_debug, 'control').offset);
  ioctlPtr(vcpuFd, ioctlByName('KVM_SET_GUEST_DEBUG').cmd, arg, 'KVM_SET_GUEST_DEBUG');
}

/**
 * Open /dev/kvm, create a VM with 64 KiB of RAM at 0, one vCPU in real mode at 0x1000 running
 * `out 0x10, 0x42; hlt`, run it to the HLT, close everything. All ioctls from the calling thread.
 * `singleStep`: first one single-stepped KVM_RUN (a KVM_EXIT_DEBUG), then debugging off again.
 */
export function runPioGuest(opts: { singleStep?: boolean } = {}): GuestRun {
  const RAM = 0x10000;
  const mem = mmap(0n, RAM, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  const kvm = Kvm.open();
  try {
    kvm.apiVersion();
    const vm = kvm.createVm();
    try {
      const code = [0xba, GUEST_PORT, 0x00, 0xb0, GUEST_BYTE, 0xee, 0xf4]; // mov dx,0x10; mov al,0x42; out dx,al; hlt
      new Uint8Array(memoryView(mem, RAM)).set(code, 0x1000);
      vm.setUserMemoryRegion({ slot: 0, flags: 0, guest_phys_addr: 0n, memory_size: BigInt(RAM), userspace_addr: mem });
      const vcpu = vm.createVcpu(0);
      try {
        const sregs = vcpu.getSregs();
        vcpu.setSregs({ ...sregs, cs: { ...sregs.cs, base: 0n, selector: 0 } });
        vcpu.setRegs({ ...vcpu.getRegs(), rip: 0x1000n, rflags: 2n });
        const exits: number[] = [];
        if (opts.singleStep) {
          setGuestDebug(vcpu.fd, KVM_GUESTDBG_ENABLE | KVM_GUESTDBG_SINGLESTEP);
          exits.push(vcpu.run());
          setGuestDebug(vcpu.fd, 0);
        }
        for (let i = 0; i < 4; i++) {
          const reason = vcpu.run();
          exits.push(reason);
          if (reason !== 2 /* KVM_EXIT_IO */) break;
        }
        return {
          exits,
          vcpuFd: vcpu.fd,
          vmFd: vm.fd,
          kvmFd: kvm.fd,
          kvmRunUserAddr: vcpu.kvmRun.userAddr,
          kvmRunSize: vcpu.kvmRun.mmapSize,
        };
      } finally {
        vcpu.close();
      }
    } finally {
      vm.close();
    }
  } finally {
    kvm.close();
    munmap(mem, RAM);
  }
}

/** Our ids still in the kernel's lists; maps are freed after an RCU grace period, so poll up to 3 s. */
export async function remainingBpfIds(ids: BpfIds): Promise<BpfIds> {
  const left = (): BpfIds => {
    const p = new Set(kernelBpfIds('prog'));
    const m = new Set(kernelBpfIds('map'));
    const l = new Set(kernelBpfIds('link'));
    return { progs: ids.progs.filter((i) => p.has(i)), maps: ids.maps.filter((i) => m.has(i)), links: ids.links.filter((i) => l.has(i)) };
  };
  let now = left();
  for (let i = 0; i < 60 && now.progs.length + now.maps.length + now.links.length > 0; i++) {
    await new Promise((r) => setTimeout(r, 50));
    now = left();
  }
  return now;
}
