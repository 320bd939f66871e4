/*
 * kvm-loop: the benchmark's C baseline workload, built on the spot with the machine's cc by scripts/bench.
 * The same job as the reference guest's pio-out / mmio-write scenarios, with no JavaScript in the way, so
 * its numbers are directly comparable with ../../../shared/HOST.md ("Numbers to beat": a C real-mode PIO
 * loop). One real-mode vCPU per thread runs `out dx,al` (or a store to an unbacked GPA) N times, then HLT.
 *
 *   kvm-loop pio|mmio EXITS VCPUS
 *
 * Prints one JSON line: {"exits":{"IO":n,"HLT":v},"vcpus":v,"loop_s":s}; loop_s covers only the KVM_RUN
 * loops (from the moment every vCPU is ready to the last HLT), like the guest's per-vCPU loop_ns.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define MEM_SIZE 0x10000
#define CODE_GPA 0x1000
#define PIO_PORT 0x10
#define MAX_VCPUS 64

static int vm_fd;
static int run_size;
static unsigned long exits_wanted;
static int mmio_mode;
static pthread_barrier_t ready;

struct vcpu_result {
	unsigned long io, mmio, hlt;
	const char *error;
};

static void die(const char *what)
{
	fprintf(stderr, "kvm-loop: %s: %s\n", what, strerror(errno));
	exit(1);
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Real-mode code at CODE_GPA, the loop count patched in at offset 2. */
static size_t write_code(uint8_t *p)
{
	size_t n = 0;
	uint32_t count = (uint32_t)exits_wanted;
	p[n++] = 0x66; p[n++] = 0xb9; /* mov ecx, imm32 */
	memcpy(p + n, &count, 4); n += 4;
	if (mmio_mode) {
		/* DS = 0x1000 puts [0] at GPA 0x10000 = MEM_SIZE, just past the only memory slot: every store
		 * exits to user space as KVM_EXIT_MMIO. */
		p[n++] = 0xb8; p[n++] = 0x00; p[n++] = 0x10; /* mov ax, 0x1000 */
		p[n++] = 0x8e; p[n++] = 0xd8;                /* mov ds, ax */
		size_t loop = n;
		p[n++] = 0xa2; p[n++] = 0x00; p[n++] = 0x00; /* mov [0x0000], al */
		p[n++] = 0x66; p[n++] = 0x49;                /* dec ecx */
		p[n++] = 0x75; p[n] = (uint8_t)(loop - (n + 1)); n++; /* jnz loop */
	} else {
		p[n++] = 0xba; p[n++] = PIO_PORT; p[n++] = 0x00; /* mov dx, PIO_PORT */
		size_t loop = n;
		p[n++] = 0xee;                                   /* out dx, al */
		p[n++] = 0x66; p[n++] = 0x49;                    /* dec ecx */
		p[n++] = 0x75; p[n] = (uint8_t)(loop - (n + 1)); n++; /* jnz loop */
	}
	p[n++] = 0xf4; /* hlt */
	return n;
}

struct vcpu_arg {
	int id;
	struct vcpu_result res;
};

static void *vcpu_thread(void *p)
{
	struct vcpu_arg *a = p;
	int fd = ioctl(vm_fd, KVM_CREATE_VCPU, a->id);
	if (fd < 0) die("KVM_CREATE_VCPU");
	struct kvm_run *run = mmap(NULL, run_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (run == MAP_FAILED) die("mmap kvm_run");
	struct kvm_sregs sregs;
	if (ioctl(fd, KVM_GET_SREGS, &sregs) < 0) die("KVM_GET_SREGS");
	sregs.cs.base = 0;
	sregs.cs.selector = 0;
	if (ioctl(fd, KVM_SET_SREGS, &sregs) < 0) die("KVM_SET_SREGS");
	struct kvm_regs regs;
	memset(&regs, 0, sizeof regs);
	regs.rip = CODE_GPA;
	regs.rflags = 2;
	if (ioctl(fd, KVM_SET_REGS, &regs) < 0) die("KVM_SET_REGS");

	pthread_barrier_wait(&ready);
	for (;;) {
		if (ioctl(fd, KVM_RUN, 0) < 0) {
			if (errno == EINTR) continue;
			die("KVM_RUN");
		}
		if (run->exit_reason == KVM_EXIT_IO) {
			a->res.io++;
		} else if (run->exit_reason == KVM_EXIT_MMIO) {
			a->res.mmio++;
		} else if (run->exit_reason == KVM_EXIT_HLT) {
			a->res.hlt++;
			break;
		} else {
			fprintf(stderr, "kvm-loop: vCPU %d: unexpected exit reason %u\n", a->id, run->exit_reason);
			exit(1);
		}
	}
	munmap(run, run_size);
	close(fd);
	return NULL;
}

int main(int argc, char **argv)
{
	if (argc != 4 || (strcmp(argv[1], "pio") && strcmp(argv[1], "mmio"))) {
		fprintf(stderr, "usage: kvm-loop pio|mmio EXITS VCPUS\n");
		return 2;
	}
	mmio_mode = !strcmp(argv[1], "mmio");
	exits_wanted = strtoul(argv[2], NULL, 10);
	int vcpus = atoi(argv[3]);
	if (exits_wanted == 0 || exits_wanted > 0xffffffffUL || vcpus < 1 || vcpus > MAX_VCPUS) {
		fprintf(stderr, "kvm-loop: EXITS must be 1..2^32-1 and VCPUS 1..%d\n", MAX_VCPUS);
		return 2;
	}

	int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (kvm < 0) die("open /dev/kvm");
	vm_fd = ioctl(kvm, KVM_CREATE_VM, 0);
	if (vm_fd < 0) die("KVM_CREATE_VM");
	run_size = ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
	if (run_size < 0) die("KVM_GET_VCPU_MMAP_SIZE");
	uint8_t *mem = mmap(NULL, MEM_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (mem == MAP_FAILED) die("mmap guest memory");
	write_code(mem + CODE_GPA);
	struct kvm_userspace_memory_region region = {
		.slot = 0, .guest_phys_addr = 0, .memory_size = MEM_SIZE, .userspace_addr = (uintptr_t)mem,
	};
	if (ioctl(vm_fd, KVM_SET_USER_MEMORY_REGION, &region) < 0) die("KVM_SET_USER_MEMORY_REGION");

	struct vcpu_arg args[MAX_VCPUS];
	pthread_t threads[MAX_VCPUS];
	memset(args, 0, sizeof args);
	pthread_barrier_init(&ready, NULL, vcpus + 1);
	for (int i = 0; i < vcpus; i++) {
		args[i].id = i;
		if (pthread_create(&threads[i], NULL, vcpu_thread, &args[i])) die("pthread_create");
	}
	pthread_barrier_wait(&ready);
	double t0 = now_s();
	unsigned long io = 0, mmio = 0, hlt = 0;
	for (int i = 0; i < vcpus; i++) {
		pthread_join(threads[i], NULL);
		io += args[i].res.io;
		mmio += args[i].res.mmio;
		hlt += args[i].res.hlt;
	}
	double elapsed = now_s() - t0;
	printf("{\"exits\":{\"%s\":%lu,\"HLT\":%lu},\"vcpus\":%d,\"loop_s\":%.6f}\n", mmio_mode ? "MMIO" : "IO",
	       mmio_mode ? mmio : io, hlt, vcpus, elapsed);
	munmap(mem, MEM_SIZE);
	close(vm_fd);
	close(kvm);
	return 0;
}
