/*
 * kt-fdvmm: a small VMM that does to its KVM fds what real VMMs do besides open and close — dup, dup2 onto
 * a tracked number, dup3, fcntl(F_DUPFD*), close_range (also CLOSE_RANGE_CLOEXEC), execve with O_CLOEXEC
 * KVM fds, fork, openat2 — for test/fd-lifecycle.test.ts, which traces it with the real BPF programs and
 * compares the capture with what this program says it did. Built on the spot with cc.
 *
 *   kt-fdvmm dup|dup-early|dup2-unrelated|close-range|exec|fork|openat2|names DIR
 *
 * Every step is one JSON line on stdout ({"step":…, fds and addresses}); exit status 0 when all went as
 * planned. Fds still open at exit are left open on purpose: the capture must list them as leaked.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <linux/openat2.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif

#define MEM_SIZE 0x10000
#define CODE_GPA 0x1000

static int kvm_fd, vm_fd, vcpu_fd, run_size;
static struct kvm_run *run;

static void die(const char *what)
{
	fprintf(stderr, "kt-fdvmm: %s: %s\n", what, strerror(errno));
	exit(1);
}

static void step(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void step(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
	fflush(stdout);
}

/* Run vCPU fd `fd` from the hlt at CODE_GPA: one KVM_EXIT_HLT. */
static void run_to_hlt(int fd)
{
	struct kvm_regs regs;
	memset(&regs, 0, sizeof regs);
	regs.rip = CODE_GPA;
	regs.rflags = 2;
	if (ioctl(fd, KVM_SET_REGS, &regs) < 0) die("KVM_SET_REGS");
	if (ioctl(fd, KVM_RUN, 0) < 0) die("KVM_RUN");
	if (run->exit_reason != KVM_EXIT_HLT) {
		fprintf(stderr, "kt-fdvmm: exit reason %u, expected HLT\n", run->exit_reason);
		exit(1);
	}
}

/* /dev/kvm (already in kvm_fd) → a VM with one page of `hlt` and vCPU 0 (in vm_fd, vcpu_fd), not mapped yet. */
static void create_vm(void)
{
	vm_fd = ioctl(kvm_fd, KVM_CREATE_VM, 0);
	if (vm_fd < 0) die("KVM_CREATE_VM");
	run_size = ioctl(kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
	if (run_size < 0) die("KVM_GET_VCPU_MMAP_SIZE");
	uint8_t *mem = mmap(NULL, MEM_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (mem == MAP_FAILED) die("mmap guest memory");
	mem[CODE_GPA] = 0xf4; /* hlt */
	struct kvm_userspace_memory_region region = {
		.slot = 0, .guest_phys_addr = 0, .memory_size = MEM_SIZE, .userspace_addr = (uintptr_t)mem,
	};
	if (ioctl(vm_fd, KVM_SET_USER_MEMORY_REGION, &region) < 0) die("KVM_SET_USER_MEMORY_REGION");
	vcpu_fd = ioctl(vm_fd, KVM_CREATE_VCPU, 0);
	if (vcpu_fd < 0) die("KVM_CREATE_VCPU");
}

/* Map vCPU 0's kvm_run through `map_fd` and set its segments through `fd` (real mode at address 0). */
static void map_and_prepare(int map_fd, int fd)
{
	run = mmap(NULL, run_size, PROT_READ | PROT_WRITE, MAP_SHARED, map_fd, 0);
	if (run == MAP_FAILED) die("mmap kvm_run");
	struct kvm_sregs sregs;
	if (ioctl(fd, KVM_GET_SREGS, &sregs) < 0) die("KVM_GET_SREGS");
	sregs.cs.base = 0;
	sregs.cs.selector = 0;
	if (ioctl(fd, KVM_SET_SREGS, &sregs) < 0) die("KVM_SET_SREGS");
}

static void setup_step(void)
{
	step("{\"step\":\"setup\",\"pid\":%d,\"kvm\":%d,\"vm\":%d,\"vcpu\":%d,\"run\":\"%p\",\"run_size\":%d}", getpid(),
	     kvm_fd, vm_fd, vcpu_fd, (void *)run, run_size);
}

/* /dev/kvm (already in kvm_fd), a VM with one page of `hlt`, vCPU 0 mapped and run once. */
static void setup_vm(void)
{
	create_vm();
	map_and_prepare(vcpu_fd, vcpu_fd);
	run_to_hlt(vcpu_fd);
	setup_step();
}

static void open_kvm(void)
{
	kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (kvm_fd < 0) die("open /dev/kvm");
}

/* A plain file of one page, mapped at offset 0 through fd `fd`: must never pass for a kvm_run. */
static void *map_unrelated(int fd)
{
	if (ftruncate(fd, 4096) < 0) die("ftruncate");
	void *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED) die("mmap unrelated file");
	return p;
}

static int unrelated_file(void)
{
	int fd = memfd_create("kt-fdvmm-unrelated", 0);
	if (fd < 0) die("memfd_create");
	return fd;
}

static int mode_dup(void)
{
	open_kvm();
	setup_vm();
	int d = dup(vcpu_fd);
	if (d < 0) die("dup");
	if (close(vcpu_fd) < 0) die("close");
	run_to_hlt(d);
	int d2 = dup2(d, 50), d3 = dup3(d, 51, O_CLOEXEC), d4 = fcntl(d, F_DUPFD, 60), d5 = fcntl(d, F_DUPFD_CLOEXEC, 70);
	if (d2 != 50 || d3 != 51 || d4 < 60 || d5 < 70) die("dup2/dup3/fcntl");
	run_to_hlt(d5);
	step("{\"step\":\"dup\",\"dup\":%d,\"dup2\":%d,\"dup3\":%d,\"dupfd\":%d,\"dupfd_cloexec\":%d}", d, d2, d3, d4, d5);
	return 0;
}

/*
 * The vCPU fd copied before anything used it: kvm_run mapped through the original, the vCPU run (twice)
 * through the copy, both closed. Neither fd sees both halves of the kvm_run join.
 */
static int mode_dup_early(void)
{
	open_kvm();
	create_vm();
	int d = dup(vcpu_fd);
	if (d < 0) die("dup");
	map_and_prepare(vcpu_fd, d);
	run_to_hlt(d);
	run_to_hlt(d);
	setup_step();
	if (close(vcpu_fd) < 0 || close(d) < 0) die("close");
	step("{\"step\":\"dup_early\",\"dup\":%d}", d);
	return 0;
}

static int mode_dup2_unrelated(void)
{
	open_kvm();
	setup_vm();
	int f = unrelated_file();
	if (dup2(f, vcpu_fd) != vcpu_fd) die("dup2 onto the vCPU fd");
	void *other = map_unrelated(vcpu_fd);
	/* A tracked fd onto another: the /dev/kvm number becomes a VM fd. */
	if (dup2(vm_fd, kvm_fd) != kvm_fd) die("dup2 vm onto kvm");
	int vcpu1 = ioctl(kvm_fd, KVM_CREATE_VCPU, 1);
	if (vcpu1 < 0) die("KVM_CREATE_VCPU on the dup2 copy");
	close(f);
	step("{\"step\":\"dup2\",\"other\":\"%p\",\"vcpu1\":%d}", other, vcpu1);
	return 0;
}

static int mode_close_range(void)
{
	open_kvm();
	setup_vm();
	int d = dup(vcpu_fd);
	if (syscall(SYS_close_range, (unsigned)vm_fd, ~0U, 0) < 0) die("close_range");
	int f = unrelated_file(); /* the lowest free number: the old VM fd's */
	void *other = map_unrelated(f);
	step("{\"step\":\"close_range\",\"dup\":%d,\"file\":%d,\"other\":\"%p\"}", d, f, other);
	return 0;
}

static int mode_exec(char *self)
{
	open_kvm();
	setup_vm();
	int keep = dup(vm_fd);  /* dup() clears O_CLOEXEC: survives the exec */
	int k2 = dup(kvm_fd);   /* not O_CLOEXEC either, until close_range marks it */
	if (keep < 0 || k2 < 0) die("dup");
	if (syscall(SYS_close_range, (unsigned)k2, (unsigned)k2, CLOSE_RANGE_CLOEXEC) < 0) die("close_range CLOEXEC");
	step("{\"step\":\"exec\",\"keep\":%d,\"k2\":%d}", keep, k2);
	char arg[16];
	snprintf(arg, sizeof arg, "%d", keep);
	char *argv[] = { self, "after-exec", arg, NULL };
	execv(self, argv);
	die("execv");
	return 1;
}

static int mode_after_exec(int keep)
{
	int f = unrelated_file(); /* lands on a number the exec freed */
	void *other = map_unrelated(f);
	/* The VM belongs to the old mm: KVM answers EIO, but the fd is still this process's VM fd. */
	int r = ioctl(keep, KVM_CHECK_EXTENSION, KVM_CAP_USER_MEMORY);
	step("{\"step\":\"after_exec\",\"pid\":%d,\"file\":%d,\"other\":\"%p\",\"ret\":%d,\"errno\":%d}", getpid(), f, other,
	     r, r < 0 ? errno : 0);
	return 0;
}

static int mode_fork(void)
{
	open_kvm();
	setup_vm();
	pid_t child = fork();
	if (child < 0) die("fork");
	if (child == 0) {
		/* KVM refuses VM ioctls from another mm (EIO), but the fd is the child's VM fd all the same. */
		int r = ioctl(vm_fd, KVM_CREATE_VCPU, 1);
		step("{\"step\":\"child\",\"pid\":%d,\"ret\":%d,\"errno\":%d}", getpid(), r, r < 0 ? errno : 0);
		_exit(0);
	}
	int status;
	if (waitpid(child, &status, 0) != child || !WIFEXITED(status) || WEXITSTATUS(status) != 0) die("child");
	run_to_hlt(vcpu_fd);
	munmap(run, run_size);
	close(vcpu_fd);
	close(vm_fd);
	close(kvm_fd);
	step("{\"step\":\"parent\",\"child\":%d}", child);
	return 0;
}

static int mode_openat2(void)
{
	struct open_how how = { .flags = O_RDWR | O_CLOEXEC };
	kvm_fd = syscall(SYS_openat2, AT_FDCWD, "/dev/kvm", &how, sizeof how);
	if (kvm_fd < 0) die("openat2 /dev/kvm");
	setup_vm();
	return 0;
}

/* Names that must not decide what a file is: /dev/kvm's device node made again under another name (still
 * /dev/kvm), and a plain file named like a vCPU's anon inode (not a vCPU: KVM_RUN on it is ENOTTY). */
static int mode_names(const char *dir)
{
	char node[4096], fake[4096];
	snprintf(node, sizeof node, "%s/not-named-kvm", dir);
	snprintf(fake, sizeof fake, "%s/kvm-vcpu:0", dir);
	if (mknod(node, S_IFCHR | 0600, makedev(10, 232)) < 0) die("mknod 10:232");
	kvm_fd = open(node, O_RDWR | O_CLOEXEC);
	if (kvm_fd < 0) die("open the second /dev/kvm node");
	int version = ioctl(kvm_fd, KVM_GET_API_VERSION, 0);
	int f = open(fake, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (f < 0) die("create kvm-vcpu:0");
	int r = ioctl(f, KVM_RUN, 0);
	step("{\"step\":\"names\",\"pid\":%d,\"kvm\":%d,\"version\":%d,\"fake\":%d,\"fake_ret\":%d,\"fake_errno\":%d}",
	     getpid(), kvm_fd, version, f, r, r < 0 ? errno : 0);
	return 0;
}

int main(int argc, char **argv)
{
	const char *mode = argc > 1 ? argv[1] : "";
	if (!strcmp(mode, "dup")) return mode_dup();
	if (!strcmp(mode, "dup-early")) return mode_dup_early();
	if (!strcmp(mode, "dup2-unrelated")) return mode_dup2_unrelated();
	if (!strcmp(mode, "close-range")) return mode_close_range();
	if (!strcmp(mode, "exec")) return mode_exec(argv[0]);
	if (!strcmp(mode, "after-exec") && argc > 2) return mode_after_exec(atoi(argv[2]));
	if (!strcmp(mode, "fork")) return mode_fork();
	if (!strcmp(mode, "openat2")) return mode_openat2();
	if (!strcmp(mode, "names") && argc > 2) return mode_names(argv[2]);
	fprintf(stderr, "usage: kt-fdvmm dup|dup-early|dup2-unrelated|close-range|exec|fork|openat2|names DIR\n");
	return 2;
}
