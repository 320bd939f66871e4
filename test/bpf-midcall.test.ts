// A vCPU thread blocked inside KVM_RUN, two ways:
// - attached while it is blocked: the exit arrives without its enter. The BPF side recovers fd/cmd/arg from
//   the thread's saved user registers, flags the record KT_F_NO_ENTER, still folds in kvm_run (found
//   through the fd), and counts it in stats().noEnter.
// - attached before, and while it is blocked another thread dup2()s /dev/null over the vCPU fd: the
//   record still names the vCPU, because fd → file → vCPU is resolved at sys_enter (at sys_exit the fd
//   would already be /dev/null).
// The blocked VMM is a tiny C program (in-kernel irqchip, guest `cli; hlt`) woken by SIGUSR1 (EINTR).
import { createInterface } from 'node:readline';
import { spawn, spawnSync, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { mkdtempSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KT_F_NO_ENTER, KT_F_RUN, KT_FD_VCPU } from '../src/bpf/event-layout.js';
import { ioctlByName } from '../src/kvm/abi/ioctl-table.js';
import { KvmTracer } from '../src/bpf/tracer.js';
import { bpfSkipReason, headerDefine, RingCollector } from './bpf-support.js';

const BLOCKER_C = String.raw`
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>
static void on_usr1(int sig) { (void)sig; }
static int vcpu;
/* race mode: on "dup" from stdin, put /dev/null where the vCPU fd was (KVM_RUN keeps its own reference). */
static void *duper(void *a) {
	char l[16]; (void)a;
	if (!fgets(l, sizeof l, stdin)) return 0;
	dup2(open("/dev/null", O_RDONLY), vcpu);
	printf("duped\n"); fflush(stdout);
	return 0;
}
int main(int argc, char **argv) {
	int race = argc > 1 && !strcmp(argv[1], "race");
	struct sigaction sa; memset(&sa, 0, sizeof sa); sa.sa_handler = on_usr1; sigaction(SIGUSR1, &sa, 0);
	int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	int vm = ioctl(kvm, KVM_CREATE_VM, 0);
	if (vm < 0 || ioctl(vm, KVM_CREATE_IRQCHIP, 0) < 0) { perror("vm/irqchip"); return 2; }
	unsigned char *mem = mmap(0, 0x10000, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	mem[0x1000] = 0xfa; mem[0x1001] = 0xf4; mem[0x1002] = 0xf4; /* cli; hlt; hlt */
	struct kvm_userspace_memory_region r = {.slot = 0, .guest_phys_addr = 0, .memory_size = 0x10000,
		.userspace_addr = (unsigned long)mem};
	if (ioctl(vm, KVM_SET_USER_MEMORY_REGION, &r) < 0) { perror("region"); return 2; }
	vcpu = ioctl(vm, KVM_CREATE_VCPU, 0);
	struct kvm_sregs s; ioctl(vcpu, KVM_GET_SREGS, &s); s.cs.base = 0; s.cs.selector = 0; ioctl(vcpu, KVM_SET_SREGS, &s);
	struct kvm_regs regs; memset(&regs, 0, sizeof regs); regs.rip = 0x1000; regs.rflags = 2; ioctl(vcpu, KVM_SET_REGS, &regs);
	printf("ready %d\n", vcpu); fflush(stdout);
	if (race) { /* on "run": start the duper with SIGUSR1 blocked (the signal is for this thread), then run */
		char l[16]; pthread_t t; sigset_t m; sigemptyset(&m); sigaddset(&m, SIGUSR1);
		if (!fgets(l, sizeof l, stdin)) return 2;
		pthread_sigmask(SIG_BLOCK, &m, 0); pthread_create(&t, 0, duper, 0); pthread_sigmask(SIG_UNBLOCK, &m, 0);
	}
	int rc = ioctl(vcpu, KVM_RUN, 0);
	printf("run %d %d\n", rc, rc < 0 ? errno : 0); fflush(stdout);
	return 0;
}
`;

function compilerMissing(): string | undefined {
  return spawnSync('cc', ['--version']).status === 0 ? undefined : 'no C compiler (cc) to build the blocked-VMM fixture';
}

const skip = bpfSkipReason() ?? compilerMissing();
if (skip) console.log(`bpf-midcall tests skipped: ${skip}`);

function lines(child: ChildProcessWithoutNullStreams): { next(prefix: string): Promise<string> } {
  const seen: string[] = [];
  const waiters: { prefix: string; resolve: (l: string) => void }[] = [];
  createInterface({ input: child.stdout }).on('line', (line) => {
    seen.push(line);
    for (const w of waiters.filter((x) => line.startsWith(x.prefix))) w.resolve(line);
  });
  return {
    next: (prefix) =>
      new Promise((resolve) => {
        const hit = seen.find((l) => l.startsWith(prefix));
        if (hit) resolve(hit);
        else waiters.push({ prefix, resolve });
      }),
  };
}

describe.skipIf(skip !== undefined)('attached while a vCPU is inside KVM_RUN', () => {
  let dir: string;
  let exe: string;

  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'kt-midcall-'));
    writeFileSync(join(dir, 'block.c'), BLOCKER_C);
    exe = join(dir, 'block');
    const cc = spawnSync('cc', ['-O2', '-pthread', '-o', exe, join(dir, 'block.c')], { encoding: 'utf8' });
    if (cc.status !== 0) throw new Error(`cc failed: ${cc.stderr}`);
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('records the exit with KT_F_NO_ENTER, cmd/fd from the saved registers, and kvm_run folded in', async () => {
    const child = spawn(exe, [], { stdio: ['ignore', 'pipe', 'pipe'] }) as ChildProcessWithoutNullStreams;
    const out = lines(child);
    const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
    let tracer: KvmTracer | undefined;
    let ring: RingCollector | undefined;
    try {
      const vcpuFd = Number((await out.next('ready')).split(' ')[1]);
      // Let it enter KVM_RUN and block, then attach.
      await new Promise((r) => setTimeout(r, 200));
      tracer = KvmTracer.open({ strategy: 'tracepoint', pids: [child.pid!] });
      ring = new RingCollector(tracer.ringMapFd);
      child.kill('SIGUSR1');
      expect(await out.next('run')).toBe('run -1 4'); // EINTR
      expect(await exited).toBe(0);
      const got = ring.drain();
      const runs = got.ioctls.filter((e) => e.pid === child.pid);
      expect(runs).toHaveLength(1);
      const e = runs[0];
      expect(e.flags & KT_F_NO_ENTER).toBe(KT_F_NO_ENTER);
      expect(e.cmd).toBe(ioctlByName('KVM_RUN').cmd);
      expect(e.fd).toBe(vcpuFd);
      expect(e.ret).toBe(-4);
      expect(e.enter_ns).toBe(0);
      expect(e.tid).toBe(child.pid);
      expect(e.flags & KT_F_RUN).toBe(KT_F_RUN);
      expect(e.fd_kind).toBe(KT_FD_VCPU);
      expect(e.vcpu_id).toBe(0);
      expect(BigInt(e.run_kaddr) % 4096n).toBe(0n);
      expect(e.exit_reason).toBe(10); // KVM_EXIT_INTR: a short-snapshot exit
      expect(e.out_len).toBe(headerDefine('KT_RUN_SNAP_SHORT'));
      expect(tracer.stats().noEnter).toBe(1);
    } finally {
      ring?.free();
      tracer?.close();
      child.kill('SIGKILL');
    }
  });

  it('names the vCPU resolved at enter even when another thread dup2()s over its fd during KVM_RUN', async () => {
    const child = spawn(exe, ['race'], { stdio: ['pipe', 'pipe', 'pipe'] });
    const out = lines(child as unknown as ChildProcessWithoutNullStreams);
    const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
    let tracer: KvmTracer | undefined;
    let ring: RingCollector | undefined;
    try {
      const vcpuFd = Number((await out.next('ready')).split(' ')[1]);
      tracer = KvmTracer.open({ strategy: 'tracepoint', pids: [child.pid!] });
      ring = new RingCollector(tracer.ringMapFd);
      child.stdin!.write('run\n');
      await new Promise((r) => setTimeout(r, 200)); // inside KVM_RUN, blocked in HLT
      child.stdin!.write('dup\n');
      await out.next('duped');
      expect(readlinkSync(`/proc/${child.pid}/fd/${vcpuFd}`)).toBe('/dev/null');
      child.kill('SIGUSR1');
      expect(await out.next('run')).toBe('run -1 4'); // EINTR
      expect(await exited).toBe(0);
      const runs = ring.drain().ioctls.filter((e) => e.pid === child.pid && e.cmd === ioctlByName('KVM_RUN').cmd);
      expect(runs).toHaveLength(1);
      const e = runs[0];
      expect(e.flags & KT_F_NO_ENTER).toBe(0);
      expect(e.fd).toBe(vcpuFd);
      expect(e.ret).toBe(-4);
      expect(e.flags & KT_F_RUN).toBe(KT_F_RUN);
      expect(e.fd_kind).toBe(KT_FD_VCPU);
      expect(e.vcpu_id).toBe(0);
      expect(BigInt(e.run_kaddr) % 4096n).toBe(0n);
      expect(e.exit_reason).toBe(10); // KVM_EXIT_INTR
    } finally {
      ring?.free();
      tracer?.close();
      child.kill('SIGKILL');
    }
  });
});
