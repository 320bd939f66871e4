/**
 * The rust-vmm-style handles (Kvm, Vm, Vcpu) against the real /dev/kvm: system queries, a VM with memory
 * and a vCPU running a two-instruction guest, register round trips (also through caller-placed buffers),
 * the ioctl observer, close() releasing fds and mappings, and EBADF from every method on a bad fd.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { errnoValue, SyscallError } from '../src/ffi/errors.js';
import { gettid, MAP_ANONYMOUS, MAP_PRIVATE, memoryView, mmap, munmap, PAGE_SIZE, PROT_READ, PROT_WRITE } from '../src/ffi/libc.js';
import { capValue, ioctlByName } from '../src/kvm/abi/ioctl-table.js';
import { KVM_EXIT } from '../src/kvm/abi/exit-reasons.generated.js';
import { setKvmObserver, type IoctlCall } from '../src/kvm/observer.js';
import { Kvm } from '../src/kvm/system.js';
import { Vcpu } from '../src/kvm/vcpu.js';
import { Vm } from '../src/kvm/vm.js';

const isRoot = process.getuid?.() === 0;
const haveKvm = existsSync('/dev/kvm');
const kvmOk = haveKvm && isRoot;
if (!kvmOk) console.log(`kvm-handles.test: skipping real-KVM tests: ${!haveKvm ? 'no /dev/kvm' : 'not root'}`);

const fdCount = (): number => readdirSync('/proc/self/fd').length;
/** An fd number no process has open (above any RLIMIT_NOFILE here): every ioctl on it is EBADF. */
const BAD_FD = 1 << 20;

/** A real-mode guest at GPA 0x1000: out dx, al; hlt. */
function guestMemory(): { addr: bigint; size: number } {
  const size = 0x10000;
  const addr = mmap(0n, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  new Uint8Array(memoryView(addr, size)).set([0xee, 0xf4], 0x1000);
  return { addr, size };
}

describe.skipIf(!kvmOk)('KVM handles on the real /dev/kvm', () => {
  let before = 0;
  beforeAll(() => {
    before = fdCount();
  });
  afterAll(() => {
    expect(fdCount()).toBe(before); // every test released what it opened
  });

  it('Kvm answers system queries', () => {
    const kvm = Kvm.open();
    try {
      expect(kvm.apiVersion()).toBe(12);
      expect(kvm.checkExtension('KVM_CAP_USER_MEMORY')).toBeGreaterThan(0);
      expect(kvm.checkExtension(capValue('USER_MEMORY'))).toBeGreaterThan(0); // by number
      const size = kvm.vcpuMmapSize();
      expect(size % PAGE_SIZE).toBe(0);
      expect(size).toBeGreaterThanOrEqual(2 * PAGE_SIZE); // kvm_run page + PIO data page at least
      const cpuid = kvm.getSupportedCpuid();
      expect(cpuid.length).toBeGreaterThan(0);
      expect(cpuid.some((e) => e.function === 0)).toBe(true);
      expect(kvm.getMsrIndexList().length).toBeGreaterThan(0);
      expect(() => kvm.checkExtension('KVM_CAP_NO_SUCH_THING')).toThrow(/unknown KVM capability/);
    } finally {
      kvm.close();
    }
  });

  it('runs a real-mode guest: KVM_EXIT_IO then KVM_EXIT_HLT, details from the kvm_run view', () => {
    const kvm = Kvm.open();
    const vm = kvm.createVm();
    const mem = guestMemory();
    const vcpu = vm.createVcpu(0);
    try {
      vm.setUserMemoryRegion({ slot: 0, flags: 0, guest_phys_addr: 0n, memory_size: BigInt(mem.size), userspace_addr: mem.addr });
      expect(vcpu.kvmRun.userAddr % BigInt(PAGE_SIZE)).toBe(0n);
      expect(vcpu.kvmRun.mmapSize).toBe(vm.runSize);
      const s = vcpu.getSregs();
      s.cs.base = 0n;
      s.cs.selector = 0;
      vcpu.setSregs(s);
      vcpu.setRegs({ ...vcpu.getRegs(), rip: 0x1000n, rflags: 2n, rdx: 0x42n, rax: 0x99n });
      expect(vcpu.run()).toBe(KVM_EXIT.IO);
      expect(vcpu.kvmRun.exitDetails()).toMatchObject({ reason: 'IO', direction: 'out', size: 1, port: 0x42, count: 1 });
      expect(vcpu.kvmRun.bytes[vcpu.kvmRun.ioDataOffset]).toBe(0x99);
      expect(vcpu.run()).toBe(KVM_EXIT.HLT);
      expect(vcpu.getRegs().rip).toBe(0x1002n);
    } finally {
      vcpu.close();
      vm.close();
      kvm.close();
      munmap(mem.addr, mem.size);
    }
  });

  it('round-trips registers through caller-placed buffers (at), misaligned and page-crossing', () => {
    const kvm = Kvm.open();
    const vm = kvm.createVm();
    const vcpu = vm.createVcpu(0);
    const arena = mmap(0n, 3 * PAGE_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    try {
      const regs = { ...vcpu.getRegs(), r9: 0x1122334455667788n, rflags: 2n };
      vcpu.setRegs(regs, arena + 3n);
      expect(vcpu.getRegs(arena + BigInt(PAGE_SIZE) - 5n)).toEqual(regs);
      const sregs = vcpu.getSregs(arena + 1n);
      sregs.es.selector = 0x123;
      sregs.es.base = 0x1230n;
      vcpu.setSregs(sregs, arena + BigInt(2 * PAGE_SIZE) - 9n);
      expect(vcpu.getSregs(arena + 7n)).toEqual(sregs);
      const msrs = [{ index: 0x174, reserved: 0, data: 0x10n }];
      expect(vcpu.setMsrs(msrs, arena + 1n)).toBe(1);
      expect(vcpu.getMsrs([0x174], arena + BigInt(PAGE_SIZE) - 12n)).toEqual(msrs);
    } finally {
      munmap(arena, 3 * PAGE_SIZE);
      vcpu.close();
      vm.close();
      kvm.close();
    }
  });

  it('the observer sees every ioctl with times, tid, fd kind, arg and errno', () => {
    const calls: IoctlCall[] = [];
    const fds: string[] = [];
    const prev = setKvmObserver({ ioctl: (c) => calls.push({ ...c }), fd: (op, fd, kind) => fds.push(`${op} ${kind} ${fd}`) });
    const kvm = Kvm.open();
    const vm = kvm.createVm();
    let vcpuFd = -1;
    try {
      const vcpu = vm.createVcpu(3);
      vcpuFd = vcpu.fd;
      let err: unknown;
      try {
        vm.createVcpu(3); // same id again
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(SyscallError);
      expect((err as SyscallError).op).toBe('KVM_CREATE_VCPU');
      vcpu.getRegs();
      vcpu.close();
    } finally {
      vm.close();
      kvm.close();
      setKvmObserver(prev);
    }
    expect(calls.map((c) => c.name)).toEqual(['KVM_GET_VCPU_MMAP_SIZE', 'KVM_CREATE_VM', 'KVM_CREATE_VCPU', 'KVM_CREATE_VCPU', 'KVM_GET_REGS']);
    const [, createVm, createVcpu, dup, getRegs] = calls;
    expect(createVm).toMatchObject({ fdKind: 'system', cmd: ioctlByName('KVM_CREATE_VM').cmd, errno: 0, vcpu: null });
    expect(createVcpu).toMatchObject({ fdKind: 'vm', arg: 3n, ret: vcpuFd, errno: 0 });
    expect(dup.errno).toBeGreaterThan(0);
    expect(dup.ret).toBe(-dup.errno);
    expect(getRegs).toMatchObject({ fdKind: 'vcpu', fd: vcpuFd, vcpu: 3, size: 144 });
    expect(getRegs.arg).not.toBe(0n);
    for (const c of calls) {
      expect(c.tid).toBe(gettid());
      expect(c.t1 >= c.t0).toBe(true);
    }
    expect(fds).toEqual([`open system ${fds[0].split(' ')[2]}`, expect.stringMatching(/^open vm /), `open vcpu ${vcpuFd}`, `close vcpu ${vcpuFd}`, expect.stringMatching(/^close vm /), expect.stringMatching(/^close system /)]);
  });

  it('close() releases the fd and kvm_run mapping, is idempotent, and later calls get EBADF', () => {
    const n0 = fdCount();
    const kvm = Kvm.open();
    const vm = kvm.createVm();
    const vcpu = vm.createVcpu(0);
    expect(fdCount()).toBe(n0 + 3);
    const maps = (): number => readMaps().filter((l) => l.includes('anon_inode:kvm-vcpu')).length;
    expect(maps()).toBeGreaterThan(0);
    vcpu.close();
    vcpu.close();
    expect(maps()).toBe(0);
    vm.close();
    kvm.close();
    kvm.close();
    expect(fdCount()).toBe(n0);
    expect(vcpu.closed && vm.closed && kvm.closed).toBe(true);
    expect(() => vcpu.getRegs()).toThrow(/KVM_GET_REGS: EBADF/);
    expect(() => kvm.apiVersion()).toThrow(/KVM_GET_API_VERSION: EBADF/);
  });
});

function readMaps(): string[] {
  return readFileSync('/proc/self/maps', 'utf8').split('\n');
}

// No /dev/kvm needed: an fd that is not open is EBADF for any ioctl, on any machine.
describe('EBADF from every method on a bad fd (rust-vmm style)', () => {
  const kvm = Kvm.fromRawFd(BAD_FD);
  const vm = Vm.fromRawFd(BAD_FD, 3 * PAGE_SIZE);
  const vcpu = Vcpu.fromRawFd(BAD_FD, 0, 0);
  const regs = { rax: 0n, rbx: 0n, rcx: 0n, rdx: 0n, rsi: 0n, rdi: 0n, rsp: 0n, rbp: 0n, r8: 0n, r9: 0n, r10: 0n, r11: 0n, r12: 0n, r13: 0n, r14: 0n, r15: 0n, rip: 0n, rflags: 2n };
  const cases: Array<[string, () => unknown]> = [
    ['KVM_GET_API_VERSION', () => kvm.apiVersion()],
    ['KVM_CHECK_EXTENSION', () => kvm.checkExtension('KVM_CAP_USER_MEMORY')],
    ['KVM_GET_VCPU_MMAP_SIZE', () => kvm.vcpuMmapSize()],
    ['KVM_GET_VCPU_MMAP_SIZE', () => kvm.createVm()],
    ['KVM_GET_SUPPORTED_CPUID', () => kvm.getSupportedCpuid()],
    ['KVM_GET_MSR_INDEX_LIST', () => kvm.getMsrIndexList()],
    ['KVM_CHECK_EXTENSION', () => vm.checkExtension(3)],
    ['KVM_SET_USER_MEMORY_REGION', () => vm.setUserMemoryRegion({ slot: 0, flags: 0, guest_phys_addr: 0n, memory_size: 0n, userspace_addr: 0n })],
    ['KVM_CREATE_VCPU', () => vm.createVcpu(0)],
    ['KVM_CREATE_IRQCHIP', () => vm.createIrqchip()],
    ['KVM_IRQ_LINE', () => vm.irqLine(4, 1)],
    ['KVM_CREATE_PIT2', () => vm.createPit2()],
    ['KVM_SET_TSS_ADDR', () => vm.setTssAddr(0xfffbd000)],
    ['KVM_SET_IDENTITY_MAP_ADDR', () => vm.setIdentityMapAddr(0xfffbc000n)],
    ['KVM_GET_CLOCK', () => vm.getClock()],
    ['KVM_ENABLE_CAP', () => vm.enableCap(0)],
    ['KVM_RUN', () => vcpu.run()],
    ['KVM_GET_REGS', () => vcpu.getRegs()],
    ['KVM_SET_REGS', () => vcpu.setRegs(regs)],
    ['KVM_GET_SREGS', () => vcpu.getSregs()],
    ['KVM_SET_SREGS', () => vcpu.setSregs({} as never)],
    ['KVM_GET_FPU', () => vcpu.getFpu()],
    ['KVM_SET_FPU', () => vcpu.setFpu({} as never)],
    ['KVM_GET_MSRS', () => vcpu.getMsrs([0x174])],
    ['KVM_SET_MSRS', () => vcpu.setMsrs([{ index: 0x174, data: 0n }])],
    ['KVM_SET_CPUID2', () => vcpu.setCpuid2([])],
    ['KVM_GET_VCPU_EVENTS', () => vcpu.getVcpuEvents()],
    ['KVM_SET_VCPU_EVENTS', () => vcpu.setVcpuEvents({} as never)],
    ['KVM_GET_DEBUGREGS', () => vcpu.getDebugregs()],
    ['KVM_SET_DEBUGREGS', () => vcpu.setDebugregs({} as never)],
    ['KVM_GET_XCRS', () => vcpu.getXcrs()],
    ['KVM_SET_XCRS', () => vcpu.setXcrs({} as never)],
    ['KVM_GET_MP_STATE', () => vcpu.getMpState()],
    ['KVM_SET_MP_STATE', () => vcpu.setMpState(0)],
  ];

  it.each(cases)('%s fails with EBADF', (name, call) => {
    let err: unknown;
    try {
      call();
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(SyscallError);
    expect((err as SyscallError).code).toBe('EBADF');
    expect((err as SyscallError).op).toBe(name);
    expect((err as Error).message).toBe(`${name}: EBADF`);
  });

  it('runRaw reports -EBADF instead of throwing', () => {
    expect(vcpu.runRaw()).toBe(-errnoValue('EBADF')!);
  });
});
