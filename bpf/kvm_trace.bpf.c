// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * kvm-trace: BPF programs that capture every KVM ioctl (ioctl type 0xAE) of the traced processes.
 *
 * One record per ioctl, emitted at syscall exit with everything about the call folded in (arguments read
 * at enter and exit, return value, latency, and for KVM_RUN the vCPU's kvm_run kernel address, vcpu_id,
 * exit reason and a kvm_run snapshot) — or, in aggregate-only mode, no record but per-CPU counters
 * (count, errors, latency histogram per request; exit reasons per vCPU) read by user space at the end.
 * Around it: the fd lifecycle (/dev/kvm opened, VM/vCPU/device fds created, mmapped, closed, process exit)
 * and, where the kernel allows kprobes or fentry, the user copies done inside a KVM ioctl.
 *
 * Arguments that end in a flexible array (kvm_msrs, kvm_cpuid2, kvm_msr_list, ...) are read with their
 * entries, up to KT_DATA_MAX: the flex_arrays map, filled by user space from BTF, says where the count is.
 *
 * Read-only: only bpf_probe_read_{user,kernel} and loads; nothing writes user or kernel memory.
 * Layouts of kernel structs come from BTF through CO-RE relocations, never from hard-coded offsets.
 *
 * Cost rules (measured on the target machine kind, nested virtualisation): every program that fires system-wide bails out first
 * thing; one ring-buffer record per KVM ioctl; records are submitted with BPF_RB_NO_WAKEUP and the
 * consumer is woken only when the ring crosses a fill threshold (it drains on a timer otherwise).
 *
 * Programs per strategy (user side toggles autoload, src/bpf/):
 *   tracepoint: kt_ioctl_enter, kt_ioctl_exit, kt_openat_exit, kt_open_exit, kt_mmap_exit, kt_close_exit,
 *               kt_process_exit, and the programs of kt_fd_track.bpf.h (dup family, close_range, execve,
 *               openat2, fork, thread exit)
 *   kprobe:     tracepoint set + kt_copy_from_user_kprobe, kt_copy_to_user_kprobe, kt_vcpu_run_kprobe
 *   fentry:     tracepoint set + kt_copy_from_user_fentry, kt_copy_to_user_fentry, kt_vcpu_run_fentry
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include "kvm_trace.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* ioctl request encoding (asm-generic/ioctl.h, the uapi ABI; x86 uses the generic one). */
#define KT_IOC_TYPE(cmd) (((cmd) >> 8) & 0xff)
#define KT_IOC_SIZE(cmd) (((cmd) >> 16) & 0x3fff)
#define KT_IOC_DIR(cmd) ((cmd) >> 30)
#define KT_IOC_WRITE 1U /* user → kernel: the kernel copy_from_user()s the argument */
#define KT_IOC_READ 2U  /* kernel → user: the kernel copy_to_user()s the argument */
#define KT_IOC(dir, nr, size) (((dir) << 30) | ((size) << 16) | (KVMIO << 8) | (nr))

#define KVMIO 0xAE
#define KT_KVM_CREATE_VM KT_IOC(0U, 0x01, 0U)
#define KT_KVM_CREATE_VCPU KT_IOC(0U, 0x41, 0U)
#define KT_KVM_RUN KT_IOC(0U, 0x80, 0U)
#define KT_KVM_CREATE_DEVICE \
	KT_IOC(KT_IOC_READ | KT_IOC_WRITE, 0xe0, (__u32)sizeof(struct kvm_create_device))
#define KT_KVM_CREATE_DEVICE_TEST 1 /* uapi: kvm_create_device.flags, "only test, create nothing" */
#define KT_KVM_EXIT_IO 2            /* uapi: kvm_run.exit_reason */
#define KT_KVM_EXIT_INTR 10

#define KT_PAGE_SIZE 4096

/* Bytes of an ioctl record before data[]. */
#define KT_IOCTL_FIXED ((__u32)__builtin_offsetof(struct kt_ioctl_event, data))

/* ---- filters and tunables: rodata written by user space between open and load; "off" defaults ---- */
const volatile __u32 filter_pid = 0;      /* one tgid (the common -p case): no map lookup */
const volatile bool filter_pids = false;  /* several tgids: the "pids" map */
const volatile bool filter_comm = false;  /* process (thread-group leader) name equals targ_comm */
const volatile char targ_comm[KT_TASK_COMM_LEN] = {};
/* Force a consumer wakeup when the unconsumed bytes of the ring cross this many bytes; 0 = never (the
 * consumer drains on its own timer). User space sets it to a quarter of the ring. */
const volatile __u64 wakeup_bytes = 0;
/* Aggregate-only mode: no ioctl records; counts, errors, latency histograms and exit reasons are kept in the
 * agg_* maps and read by user space at the end (fd-lifecycle records still go to the ring: they are rare). */
const volatile bool aggregate_only = false;

/* ---- maps ---- */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 8 << 20); /* resized by user space before load */
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, KT_STAT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32); /* tgid */
	__type(value, __u8);
} pids SEC(".maps");

/* Per-thread state of a KVM ioctl in flight, from sys_enter to sys_exit. */
struct enter_info {
	__u64 enter_ns;
	__u64 arg;
	__u64 vcpu; /* struct kvm_vcpu * seen by kvm_arch_vcpu_ioctl_run (kprobe/fentry), else 0 */
	__s32 fd;
	__u32 cmd;
	__u16 flags;
	__u16 in_len;
	__u32 active; /* 1 between enter and exit */
};

/* The state also holds the record of every ioctl but KVM_RUN while it is built: write-direction bytes go
 * straight into ev.data at enter, read-direction bytes after them at exit. Per thread, so no per-CPU
 * scratch that a preempted program could share with another. */
struct enter_state {
	struct enter_info i;
	struct kt_ioctl_event ev;
};

/* Task-local storage (measured here: enter 85 ns + exit 240 ns per KVM_RUN, against 158 + 297 ns for a
 * tid-keyed hash with insert/delete): no hash, nothing to delete, freed with the task. */
struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct enter_state);
} state SEC(".maps");

struct fd_key {
	__u32 tgid;
	__s32 fd;
};

/* Tracked KVM fds: (tgid, fd) → enum kt_fd_kind. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, struct fd_key);
	__type(value, __u32);
} fds SEC(".maps");

/* Arguments ending in a flexible array (struct kt_flex_array): request number → where the element count
 * sits and how big an element is. Filled by user space after load, before attach, from the kernel's BTF and
 * its table of what each handler copies; sized by it too. KVM_RUN is never in it. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 32); /* resized by user space before load */
	__type(key, __u32);      /* ioctl request number */
	__type(value, struct kt_flex_array);
} flex_arrays SEC(".maps");

/* Aggregate-only mode (struct kt_agg_ioctl, kt_agg_exits). Per-CPU, updated with plain adds: the kernel runs
 * tracepoint programs through trace_call_bpf(), whose per-CPU bpf_prog_active guard lets no second tracepoint
 * program start on a CPU while one runs there (measured here: atomic adds cost ~20 ns more per KVM_RUN).
 * KVM_RUN, the hot one, has its own one-entry array (no hash on its path); the rest go to a hash keyed by
 * request number, since _IOC_NR alone is ambiguous (KVM_GET_PIT2 and KVM_GET_VCPU_EVENTS share 0x9f). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct kt_agg_ioctl);
} agg_run SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 1024);
	__type(key, __u32); /* ioctl request number; 0 = overflow (pre-inserted by user space) */
	__type(value, struct kt_agg_ioctl);
} agg_ioctls SEC(".maps");

/* A zeroed kt_agg_ioctl to insert from (too big for the BPF stack); never written. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct kt_agg_ioctl);
} agg_zero SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, KT_AGG_VCPUS);
	__type(key, __u32); /* vcpu_id, capped */
	__type(value, struct kt_agg_exits);
} agg_exits SEC(".maps");

/* Processes holding tracked fds: sched_process_exit looks here first and bails out otherwise. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32); /* tgid */
	__type(value, __u32);
} procs SEC(".maps");

/* The kernel's ioctl handlers of /dev/kvm and vCPU files: file->f_op->unlocked_ioctl tells a KVM file
 * from any other, even for fds opened before we attached. Resolved by libbpf from /proc/kallsyms; weak so
 * a kernel without them still loads (then fd kinds come only from what we saw being created). */
extern const void kvm_vcpu_ioctl __ksym __weak;
extern const void kvm_dev_ioctl __ksym __weak;

/* Every record type in the object's BTF: test/event-layout.test.ts compares the decoder against it. */
const struct kt_hdr *unused_kt_hdr __attribute__((unused));
const struct kt_ioctl_event *unused_kt_ioctl_event __attribute__((unused));
const struct kt_fd_event *unused_kt_fd_event __attribute__((unused));
const struct kt_mmap_event *unused_kt_mmap_event __attribute__((unused));
const struct kt_exit_event *unused_kt_exit_event __attribute__((unused));
const struct kt_copy_event *unused_kt_copy_event __attribute__((unused));
const enum kt_event_type *unused_kt_event_type __attribute__((unused));
const enum kt_flags *unused_kt_flags __attribute__((unused));
const enum kt_fd_kind *unused_kt_fd_kind __attribute__((unused));
const enum kt_fd_op *unused_kt_fd_op __attribute__((unused));
const enum kt_copy_dir *unused_kt_copy_dir __attribute__((unused));
const enum kt_stat *unused_kt_stat __attribute__((unused));
const enum kt_flex_when *unused_kt_flex_when __attribute__((unused));
const struct kt_agg_ioctl *unused_kt_agg_ioctl __attribute__((unused));
const struct kt_agg_exits *unused_kt_agg_exits __attribute__((unused));

/* ---- helpers ---- */

static __always_inline void stat_inc(__u32 idx)
{
	__u64 *v = bpf_map_lookup_elem(&stats, &idx);

	if (v)
		*v += 1;
}

/* Cheap filters only; anything fancier (regexes, thread names) is for user space. */
static __always_inline bool trace_allowed(__u32 tgid)
{
	if (filter_pid && tgid != filter_pid)
		return false;
	if (filter_pids && !bpf_map_lookup_elem(&pids, &tgid))
		return false;
	if (filter_comm) {
		/* The process name, not the thread's: QEMU's vCPU threads are called "CPU 0/KVM". */
		struct task_struct *task = (struct task_struct *)bpf_get_current_task();
		char comm[KT_TASK_COMM_LEN];

		BPF_CORE_READ_STR_INTO(&comm, task, group_leader, comm);
		for (int i = 0; i < KT_TASK_COMM_LEN; i++) {
			if (comm[i] != targ_comm[i])
				return false;
			if (comm[i] == 0)
				break;
		}
	}
	return true;
}

static __always_inline void fill_hdr(struct kt_hdr *h, __u16 type, __u64 pid_tgid)
{
	h->type = type;
	h->flags = 0;
	h->cpu = bpf_get_smp_processor_id();
	h->ts_ns = bpf_ktime_get_ns();
	h->pid = pid_tgid >> 32;
	h->tid = (__u32)pid_tgid;
}

/* Submit flags: no wakeup, unless this record (ring-buffer stride `stride`, already counted in
 * `avail_after` = unconsumed bytes) made the ring cross wakeup_bytes. Crossing, not "above", so a slow
 * consumer is not woken once per record (per-record wakeups cost 1.9x on this machine kind). */
static __always_inline __u64 wake_flags(__u64 avail_after, __u64 stride)
{
	if (wakeup_bytes && avail_after >= wakeup_bytes && avail_after - stride < wakeup_bytes)
		return BPF_RB_FORCE_WAKEUP;
	return BPF_RB_NO_WAKEUP;
}

static __always_inline __u64 rb_stride(__u64 len)
{
	return (len + 8 + 7) & ~7ULL; /* BPF_RINGBUF_HDR_SZ + payload, 8-aligned */
}

static __always_inline int rb_output(void *rec, __u64 len)
{
	__u64 before = bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA);
	__u64 stride = rb_stride(len);

	if (bpf_ringbuf_output(&events, rec, len, wake_flags(before + stride, stride))) {
		stat_inc(KT_STAT_LOST);
		return -1;
	}
	stat_inc(KT_STAT_EVENTS);
	return 0;
}

static __always_inline void rb_submit(void *rec, __u64 len)
{
	__u64 avail = bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA);

	bpf_ringbuf_submit(rec, wake_flags(avail, rb_stride(len)));
	stat_inc(KT_STAT_EVENTS);
}

static __always_inline struct enter_state *state_lookup(void)
{
	return bpf_task_storage_get(&state, bpf_get_current_task_btf(), 0, 0);
}

static __always_inline struct enter_state *state_create(void)
{
	return bpf_task_storage_get(&state, bpf_get_current_task_btf(), 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
}

/* A kernel pointer read as a plain number, turned back into a typed (read-only, untrusted) BTF pointer:
 * loads through it are single instructions the verifier guards with an exception-table entry, instead of
 * one bpf_probe_read_kernel() call per field. */
extern void *bpf_rdonly_cast(const void *obj, __u32 btf_id) __ksym;
#define kt_cast(type, ptr) ((type *)bpf_rdonly_cast((ptr), bpf_core_type_id_kernel(type)))

/* The struct file behind fd in the current process, or NULL. Only fdt->fd[fd] needs a helper: the
 * verifier treats a pointer-to-pointer member as a number. */
static __always_inline struct file *file_of_fd(__s32 fd)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct fdtable *fdt = task->files->fdt;
	struct file *file = NULL;

	if (fd < 0 || (__u32)fd >= fdt->max_fds)
		return NULL;
	if (bpf_probe_read_kernel(&file, sizeof(file), &fdt->fd[fd]) || !file)
		return NULL;
	return kt_cast(struct file, file);
}

static __always_inline const void *ioctl_handler(struct file *file)
{
	return file ? (const void *)file->f_op->unlocked_ioctl : NULL;
}

static __always_inline __u32 tracked_kind(__u32 tgid, __s32 fd)
{
	struct fd_key key = { .tgid = tgid, .fd = fd };
	__u32 *kind = bpf_map_lookup_elem(&fds, &key);

	return kind ? *kind : KT_FD_UNKNOWN;
}

static __always_inline void track_fd(__u32 tgid, __s32 fd, __u32 kind)
{
	struct fd_key key = { .tgid = tgid, .fd = fd };
	__u32 one = 1;

	bpf_map_update_elem(&fds, &key, &kind, BPF_ANY);
	bpf_map_update_elem(&procs, &tgid, &one, BPF_ANY);
}

/* The vCPU behind a KVM_RUN fd: the one kvm_arch_vcpu_ioctl_run saw (kprobe/fentry strategies), else
 * file->private_data after checking that the file really is a vCPU (its ioctl handler, or our tracking). */
static __always_inline struct kvm_vcpu *vcpu_of(struct enter_info *in, __u32 tgid)
{
	struct file *file;

	if (in->vcpu)
		return kt_cast(struct kvm_vcpu, (void *)in->vcpu);
	file = file_of_fd(in->fd);
	if (!file)
		return NULL;
	if (&kvm_vcpu_ioctl) {
		if (ioctl_handler(file) != &kvm_vcpu_ioctl)
			return NULL;
	} else if (tracked_kind(tgid, in->fd) != KT_FD_VCPU) {
		return NULL;
	}
	return kt_cast(struct kvm_vcpu, file->private_data);
}

/* ---- KVM ioctls ---- */

/*
 * data[0, have) holds the fixed _IOC_SIZE bytes just read from the argument at `arg`. When `cmd` has a
 * flexible array whose entries are copied at this point (`when`), read min(hdr_size + count * entry_size,
 * KT_DATA_MAX) bytes instead, the count taken from the captured bytes; set `trunc` when they do not all
 * fit (and `fault` when they could not be read). Returns the bytes now in data[]. Only non-KVM_RUN calls get
 * here (one hash lookup each).
 *
 * The whole argument is read again from its start rather than only the rest: the verifier can bound one
 * size of at most KT_DATA_MAX at data, not the sum of two variable lengths. If that read faults (the
 * kernel's own copy would too) the fixed part is read again, as the failed read zeroed it.
 */
static __always_inline __u32 read_flex(__u8 *data, __u32 have, __u32 cmd, __u64 arg, __u32 when, __u16 *flags,
				       __u16 trunc, __u16 fault)
{
	struct kt_flex_array *fa = bpf_map_lookup_elem(&flex_arrays, &cmd);
	__u32 off, count, want;
	__u64 total;
	const __u8 *p;

	if (!fa || !(fa->when & when) || have > KT_DATA_MAX)
		return have;
	off = fa->count_off;
	if (off > KT_DATA_MAX - 4 || off + fa->count_size > have)
		return have;
	p = data + off;
	count = p[0] | (p[1] << 8) | (p[2] << 16) | ((__u32)p[3] << 24);
	if (fa->count_size == 1)
		count &= 0xff;
	else if (fa->count_size == 2)
		count &= 0xffff;
	total = fa->hdr_size + (__u64)count * fa->entry_size;
	if (total > KT_DATA_MAX) {
		total = KT_DATA_MAX;
		*flags |= trunc;
	}
	want = total;
	if (want <= have)
		return have;
	if (!bpf_probe_read_user(data, want, (const void *)arg))
		return want;
	*flags |= fault;
	if (bpf_probe_read_user(data, have, (const void *)arg))
		return 0;
	return have;
}

SEC("tracepoint/syscalls/sys_enter_ioctl")
int kt_ioctl_enter(struct trace_event_raw_sys_enter *ctx)
{
	__u32 cmd = (__u32)ctx->args[1];
	struct enter_state *st;
	__u32 size, n;

	if (KT_IOC_TYPE(cmd) != KVMIO)
		return 0;
	if (!trace_allowed(bpf_get_current_pid_tgid() >> 32))
		return 0;
	st = state_create();
	if (!st) {
		stat_inc(KT_STAT_STATE_FULL);
		return 0;
	}
	st->i.enter_ns = bpf_ktime_get_ns();
	st->i.fd = (__s32)ctx->args[0];
	st->i.cmd = cmd;
	st->i.arg = ctx->args[2];
	st->i.vcpu = 0;
	st->i.flags = 0;
	st->i.in_len = 0;
	st->i.active = 1;
	if (aggregate_only) /* no record: the argument is not read */
		return 0;

	size = KT_IOC_SIZE(cmd);
	if (!(KT_IOC_DIR(cmd) & KT_IOC_WRITE) || size == 0)
		return 0;
	n = size;
	if (n > KT_DATA_MAX) {
		n = KT_DATA_MAX;
		st->i.flags |= KT_F_IN_TRUNC;
	}
	if (bpf_probe_read_user(st->ev.data, n, (const void *)st->i.arg))
		st->i.flags |= KT_F_IN_FAULT;
	else
		st->i.in_len = read_flex(st->ev.data, n, cmd, st->i.arg, KT_FLEX_ENTER, &st->i.flags, KT_F_IN_TRUNC,
					   KT_F_IN_FAULT);
	return 0;
}

static __always_inline void fill_ioctl(struct kt_ioctl_event *e, struct enter_info *in, __u64 pid_tgid,
				       long ret)
{
	fill_hdr(&e->hdr, KT_EV_IOCTL, pid_tgid);
	e->hdr.flags = in->flags;
	e->enter_ns = in->enter_ns;
	e->arg = in->arg;
	e->ret = ret;
	e->fd = in->fd;
	e->cmd = in->cmd;
	e->run_kaddr = 0;
	e->vcpu_id = -1;
	e->exit_reason = 0;
	e->pio_data = 0;
	e->in_len = 0;
	e->out_len = 0;
	e->fd_kind = KT_FD_UNKNOWN;
	__builtin_memcpy(e->comm, bpf_get_current_task_btf()->comm, sizeof(e->comm));
}

/* KVM_RUN exits whose details sit in the first KT_RUN_SNAP_SHORT bytes of kvm_run (header + the start of the
 * exit union: io, mmio, msr; none for HLT, INTR, SHUTDOWN, IRQ_WINDOW_OPEN). Their records
 * carry the short snapshot: smaller records are what makes the ring cheap here (measured: a 400-byte
 * record costs ~150 ns more to reserve than a 32-byte one on this machine kind). */
static __always_inline bool short_snapshot_exit(__u32 reason)
{
	switch (reason) {
	case 2:  /* KVM_EXIT_IO */
	case 5:  /* KVM_EXIT_HLT */
	case 6:  /* KVM_EXIT_MMIO */
	case 7:  /* KVM_EXIT_IRQ_WINDOW_OPEN */
	case 8:  /* KVM_EXIT_SHUTDOWN */
	case 10: /* KVM_EXIT_INTR */
	case 29: /* KVM_EXIT_X86_RDMSR */
	case 30: /* KVM_EXIT_X86_WRMSR */
		return true;
	}
	return false;
}

/* The whole io, mmio and msr members must fit the short snapshot (CO-RE: checked against this kernel's BTF;
 * the verifier drops the short path when they do not). */
#define KT_RUN_SHORT_FITS                                                                                   \
	(bpf_core_field_offset(struct kvm_run, io) + bpf_core_field_size(struct kvm_run, io) <=                \
		 KT_RUN_SNAP_SHORT &&                                                                          \
	 bpf_core_field_offset(struct kvm_run, mmio) + bpf_core_field_size(struct kvm_run, mmio) <=            \
		 KT_RUN_SNAP_SHORT &&                                                                          \
	 bpf_core_field_offset(struct kvm_run, msr) + bpf_core_field_size(struct kvm_run, msr) <=              \
		 KT_RUN_SNAP_SHORT)

/* KVM_RUN, the hot path: a fixed-size record reserved in the ring (one of three sizes: no vCPU found,
 * short snapshot, full snapshot), kvm_run read straight into it, the PIO data offset then taken from
 * that copy (CO-RE offsets) rather than read again. */
static __always_inline void emit_run(struct enter_info *in, __u64 pid_tgid, long ret)
{
	struct kvm_vcpu *vcpu = vcpu_of(in, pid_tgid >> 32);
	struct kvm_run *run = vcpu ? vcpu->run : NULL;
	struct kt_ioctl_event *e;
	struct kvm_run *snap;
	__u32 reason = 0, snap_len, rec_len;
	__u64 data_offset;
	const void *pio;

	if (run)
		reason = run->exit_reason;
	if (!run) {
		rec_len = KT_IOCTL_FIXED;
		snap_len = 0;
		e = bpf_ringbuf_reserve(&events, KT_IOCTL_FIXED, 0);
	} else if (KT_RUN_SHORT_FITS && short_snapshot_exit(reason)) {
		rec_len = KT_IOCTL_FIXED + KT_RUN_SNAP_SHORT;
		snap_len = KT_RUN_SNAP_SHORT;
		e = bpf_ringbuf_reserve(&events, KT_IOCTL_FIXED + KT_RUN_SNAP_SHORT, 0);
	} else {
		rec_len = KT_IOCTL_FIXED + KT_RUN_SNAP;
		snap_len = KT_RUN_SNAP;
		e = bpf_ringbuf_reserve(&events, KT_IOCTL_FIXED + KT_RUN_SNAP, 0);
	}
	if (!e) {
		stat_inc(KT_STAT_LOST);
		return;
	}
	fill_ioctl(e, in, pid_tgid, ret);
	if (!run)
		goto out;
	e->fd_kind = KT_FD_VCPU;
	e->run_kaddr = (__u64)run;
	e->vcpu_id = vcpu->vcpu_id;
	e->exit_reason = reason;
	if (snap_len == KT_RUN_SNAP_SHORT) {
		if (bpf_probe_read_kernel(e->data, KT_RUN_SNAP_SHORT, run))
			goto fault;
	} else if (snap_len == KT_RUN_SNAP) {
		if (bpf_probe_read_kernel(e->data, KT_RUN_SNAP, run))
			goto fault;
	} else {
		goto out;
	}
	e->out_len = snap_len;
	e->hdr.flags |= KT_F_RUN;
	if (reason != KT_KVM_EXIT_IO)
		goto out;
	/* kvm_run's mmap is page 0 = vcpu->run, page 1 (KVM_PIO_PAGE_OFFSET) = vcpu->arch.pio_data: two
	 * separate kernel pages, so the PIO bytes are found through the page data_offset points into. */
	snap = (struct kvm_run *)e->data;
	data_offset = snap->io.data_offset;
	if (data_offset % KT_PAGE_SIZE > KT_PAGE_SIZE - sizeof(e->pio_data))
		goto out;
	if (data_offset / KT_PAGE_SIZE == 0)
		pio = (const void *)run + data_offset;
	else if (data_offset / KT_PAGE_SIZE == 1)
		pio = (const void *)vcpu->arch.pio_data + (data_offset % KT_PAGE_SIZE);
	else
		goto out;
	bpf_probe_read_kernel(&e->pio_data, sizeof(e->pio_data), pio);
	goto out;
fault:
	e->hdr.flags |= KT_F_OUT_FAULT;
out:
	rb_submit(e, rec_len);
}

/* Every other KVM ioctl: built in the thread's state record (in bytes already at the start of data[])
 * and output with its exact length. */
static __always_inline void emit_ioctl(struct enter_state *st, __u64 pid_tgid, long ret)
{
	struct enter_info *in = &st->i;
	struct kt_ioctl_event *e = &st->ev;
	__u32 tgid = pid_tgid >> 32;
	__u32 in_len = in->in_len, out_len = 0, size, n, len;

	fill_ioctl(e, in, pid_tgid, ret);
	e->fd_kind = tracked_kind(tgid, in->fd);
	if (in_len > KT_DATA_MAX)
		in_len = KT_DATA_MAX;

	size = KT_IOC_SIZE(in->cmd);
	if ((KT_IOC_DIR(in->cmd) & KT_IOC_READ) && size) {
		n = size;
		if (n > KT_DATA_MAX) {
			n = KT_DATA_MAX;
			e->hdr.flags |= KT_F_OUT_TRUNC;
		}
		if (bpf_probe_read_user(e->data + in_len, n, (const void *)in->arg))
			e->hdr.flags |= KT_F_OUT_FAULT;
		else if (ret < 0) /* a failed call copied no entries back */
			out_len = n;
		else
			out_len = read_flex(e->data + in_len, n, in->cmd, in->arg, KT_FLEX_EXIT, &e->hdr.flags,
					    KT_F_OUT_TRUNC, KT_F_OUT_FAULT);
	}
	e->in_len = in_len;
	e->out_len = out_len;

	/* Learn the kinds of the fds KVM hands out, from their creating ioctl's result. */
	if (ret >= 0) {
		if (in->cmd == KT_KVM_CREATE_VM) {
			track_fd(tgid, ret, KT_FD_VM);
		} else if (in->cmd == KT_KVM_CREATE_VCPU) {
			track_fd(tgid, ret, KT_FD_VCPU);
		} else if (in->cmd == KT_KVM_CREATE_DEVICE && out_len >= sizeof(struct kvm_create_device)) {
			struct kvm_create_device cd;

			if (!bpf_probe_read_kernel(&cd, sizeof(cd), e->data + in_len) &&
			    !(BPF_CORE_READ(&cd, flags) & KT_KVM_CREATE_DEVICE_TEST))
				track_fd(tgid, BPF_CORE_READ(&cd, fd), KT_FD_DEVICE);
		}
	}
	len = KT_IOCTL_FIXED + in_len + out_len;
	if (len > sizeof(*e)) /* cannot happen; tells the verifier the bound */
		return;
	rb_output(e, len);
}

/* ---- aggregate-only mode ---- */

/* floor(log2(v)) for v > 0, without loops. */
static __always_inline __u32 log2_u64(__u64 v)
{
	__u32 r = 0, shift;

	shift = (v > 0xffffffffULL) << 5;
	v >>= shift;
	r |= shift;
	shift = (v > 0xffff) << 4;
	v >>= shift;
	r |= shift;
	shift = (v > 0xff) << 3;
	v >>= shift;
	r |= shift;
	shift = (v > 0xf) << 2;
	v >>= shift;
	r |= shift;
	shift = (v > 0x3) << 1;
	v >>= shift;
	r |= shift;
	return r | (__u32)(v >> 1);
}

/* Histogram bucket of a latency (see KT_AGG_BUCKETS in kvm_trace.h). */
static __always_inline __u32 lat_bucket(__u64 ns)
{
	__u32 e, b;

	if (ns < 4)
		return ns;
	e = log2_u64(ns);
	b = (e - 1) * 4 + ((ns >> (e - 2)) & 3);
	if (b >= KT_AGG_BUCKETS)
		b = KT_AGG_BUCKETS - 1;
	/* The verifier must see the bound on the register used for the index: clang would otherwise index with
	 * the pre-clamp copy. The mask changes nothing (KT_AGG_BUCKETS is a power of two, b is below it). */
	barrier_var(b);
	return b & (KT_AGG_BUCKETS - 1);
}

/* The counters of a non-KVM_RUN request: found, else inserted zeroed (another CPU may win the insert: look
 * it up again either way), else the overflow entry 0 when the hash is full. */
static __always_inline struct kt_agg_ioctl *agg_counters(__u32 cmd)
{
	struct kt_agg_ioctl *a = bpf_map_lookup_elem(&agg_ioctls, &cmd);
	__u32 zero = 0;
	void *init;

	if (a)
		return a;
	init = bpf_map_lookup_elem(&agg_zero, &zero);
	if (!init)
		return NULL;
	bpf_map_update_elem(&agg_ioctls, &cmd, init, BPF_NOEXIST);
	a = bpf_map_lookup_elem(&agg_ioctls, &cmd);
	return a ? a : bpf_map_lookup_elem(&agg_ioctls, &zero);
}

/* KVM_RUN's exit reason per vCPU: the same fd → file → vcpu walk as emit_run, then two loads. A failed
 * KVM_RUN leaves exit_reason stale, except -EINTR, for which KVM sets KVM_EXIT_INTR (as the decoder counts). */
static __always_inline void agg_exit_reason(struct enter_info *in, __u32 tgid, long ret)
{
	struct kvm_vcpu *vcpu = vcpu_of(in, tgid);
	struct kvm_run *run = vcpu ? vcpu->run : NULL;
	struct kt_agg_exits *x;
	__u32 slot, reason;
	int id;

	if (!run)
		return;
	id = vcpu->vcpu_id;
	slot = id < 0 || id >= KT_AGG_VCPUS ? KT_AGG_VCPUS - 1 : id;
	x = bpf_map_lookup_elem(&agg_exits, &slot);
	if (!x)
		return;
	reason = run->exit_reason;
	if (ret < 0 && reason != KT_KVM_EXIT_INTR)
		return;
	if (reason >= KT_AGG_REASONS)
		reason = KT_AGG_REASONS - 1;
	barrier_var(reason); /* as in lat_bucket: the bound must hold on the indexing register */
	reason &= KT_AGG_REASONS - 1;
	x->reasons[reason] += 1;
}

/* One returned KVM ioctl into the counters (instead of a record). */
static __always_inline void agg_ioctl(struct enter_info *in, __u64 pid_tgid, long ret)
{
	struct kt_agg_ioctl *a;
	__u32 zero = 0;
	__u64 lat;

	if (in->cmd == KT_KVM_RUN) {
		a = bpf_map_lookup_elem(&agg_run, &zero);
		agg_exit_reason(in, pid_tgid >> 32, ret);
	} else {
		a = agg_counters(in->cmd);
		/* Learn vCPU fds (vcpu_of's fallback when the kernel lacks the kvm_vcpu_ioctl symbol). */
		if (ret >= 0 && in->cmd == KT_KVM_CREATE_VCPU)
			track_fd(pid_tgid >> 32, ret, KT_FD_VCPU);
	}
	if (!a)
		return;
	a->count += 1;
	if (ret < 0)
		a->errors += 1;
	if (in->flags & KT_F_NO_ENTER) {
		a->no_enter += 1;
		return;
	}
	lat = bpf_ktime_get_ns() - in->enter_ns;
	a->sum_ns += lat;
	if (lat > a->max_ns)
		a->max_ns = lat;
	a->hist[lat_bucket(lat)] += 1;
}

SEC("tracepoint/syscalls/sys_exit_ioctl")
int kt_ioctl_exit(struct trace_event_raw_sys_exit *ctx)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	struct enter_state *st = state_lookup();
	long ret = ctx->ret;
	struct pt_regs *regs;
	__u32 cmd;

	if (!st || !st->i.active) {
		/* No enter: attached while this thread was inside the ioctl (a vCPU blocked in KVM_RUN). The
		 * syscall's arguments are still in its saved user registers. Every ioctl exit of the system
		 * passes here, so the ioctl type is checked first. */
		regs = (struct pt_regs *)bpf_task_pt_regs(bpf_get_current_task_btf());
		cmd = (__u32)regs->si;
		if (KT_IOC_TYPE(cmd) != KVMIO || !trace_allowed(pid_tgid >> 32))
			return 0;
		stat_inc(KT_STAT_NO_ENTER);
		st = state_create();
		if (!st) {
			stat_inc(KT_STAT_STATE_FULL);
			return 0;
		}
		st->i.enter_ns = 0;
		st->i.fd = (__s32)regs->di;
		st->i.cmd = cmd;
		st->i.arg = regs->dx;
		st->i.vcpu = 0;
		st->i.flags = KT_F_NO_ENTER;
		st->i.in_len = 0;
	}
	if (aggregate_only)
		agg_ioctl(&st->i, pid_tgid, ret);
	else if (st->i.cmd == KT_KVM_RUN)
		emit_run(&st->i, pid_tgid, ret);
	else
		emit_ioctl(st, pid_tgid, ret);
	st->i.active = 0;
	return 0;
}

/* ---- fd lifecycle ---- */

static __always_inline void emit_fd(__u64 pid_tgid, __s32 fd, __u32 op, __u32 kind, __s32 ret)
{
	struct kt_fd_event e = {};

	fill_hdr(&e.hdr, KT_EV_FD, pid_tgid);
	e.fd = fd;
	e.op = op;
	e.kind = kind;
	e.ret = ret;
	bpf_get_current_comm(&e.comm, sizeof(e.comm));
	rb_output(&e, sizeof(e));
}

/* open/openat returned: is the new fd /dev/kvm? Decided by the file's ioctl handler (no path strings:
 * relative paths, symlinks and bind mounts all count). Fires for every open in the system: the failed
 * ones and filtered processes leave at once. */
static __always_inline int on_open_exit(long ret)
{
	__u64 pid_tgid;
	__u32 tgid;

	if (ret < 0 || !&kvm_dev_ioctl)
		return 0;
	pid_tgid = bpf_get_current_pid_tgid();
	tgid = pid_tgid >> 32;
	if (!trace_allowed(tgid))
		return 0;
	if (ioctl_handler(file_of_fd(ret)) != &kvm_dev_ioctl)
		return 0;
	track_fd(tgid, ret, KT_FD_SYSTEM);
	emit_fd(pid_tgid, ret, KT_FD_OPEN, KT_FD_SYSTEM, ret);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_openat")
int kt_openat_exit(struct trace_event_raw_sys_exit *ctx)
{
	return on_open_exit(ctx->ret);
}

SEC("tracepoint/syscalls/sys_exit_open")
int kt_open_exit(struct trace_event_raw_sys_exit *ctx)
{
	return on_open_exit(ctx->ret);
}

/* mmap of a tracked fd (a vCPU's kvm_run). Exit only: the arguments are read from the saved user
 * registers, so anonymous mappings (fd -1) cost one register read and no map lookup. */
SEC("tracepoint/syscalls/sys_exit_mmap")
int kt_mmap_exit(struct trace_event_raw_sys_exit *ctx)
{
	struct pt_regs *regs = (struct pt_regs *)bpf_task_pt_regs(bpf_get_current_task_btf());
	__s32 fd = (__s32)regs->r8;
	long ret = ctx->ret;
	struct kt_mmap_event e = {};
	__u64 pid_tgid;
	__u32 kind;

	if (fd < 0 || (ret < 0 && ret >= -4095))
		return 0;
	pid_tgid = bpf_get_current_pid_tgid();
	kind = tracked_kind(pid_tgid >> 32, fd);
	if (kind == KT_FD_UNKNOWN)
		return 0;
	fill_hdr(&e.hdr, KT_EV_MMAP, pid_tgid);
	e.addr = ret;
	e.len = regs->si;
	e.prot = regs->dx;
	e.mflags = regs->r10;
	e.pgoff = regs->r9;
	e.fd = fd;
	e.kind = kind;
	rb_output(&e, sizeof(e));
	return 0;
}

/* close of a tracked fd: report and forget it (a close that failed with EBADF closed nothing). */
SEC("tracepoint/syscalls/sys_exit_close")
int kt_close_exit(struct trace_event_raw_sys_exit *ctx)
{
	struct pt_regs *regs = (struct pt_regs *)bpf_task_pt_regs(bpf_get_current_task_btf());
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	struct fd_key key = { .tgid = pid_tgid >> 32, .fd = (__s32)regs->di };
	__u32 *kind = bpf_map_lookup_elem(&fds, &key);
	long ret = ctx->ret;
	__u32 k;

	if (!kind)
		return 0;
	k = *kind;
	if (ret != -9 /* EBADF */)
		bpf_map_delete_elem(&fds, &key);
	emit_fd(pid_tgid, key.fd, KT_FD_CLOSE, k, ret);
	return 0;
}

static long forget_tgid_fd(struct bpf_map *map, struct fd_key *key, __u32 *kind, __u32 *tgid)
{
	if (key->tgid == *tgid)
		bpf_map_delete_elem(map, key);
	return 0;
}

/* A process that held KVM fds exited: report it (user space lists what it never closed) and forget
 * its fds. Fires for every thread exit of the system: one hash lookup, then out. */
SEC("tracepoint/sched/sched_process_exit")
int kt_process_exit(struct trace_event_raw_sched_process_exit *ctx)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	__u32 tgid = pid_tgid >> 32;
	struct task_struct *task;
	struct kt_exit_event e = {};
	bool group_dead;

	if (!bpf_map_lookup_elem(&procs, &tgid))
		return 0;
	task = (struct task_struct *)bpf_get_current_task();
	if (bpf_core_field_exists(ctx->group_dead))
		group_dead = BPF_CORE_READ(ctx, group_dead);
	else
		group_dead = BPF_CORE_READ(task, signal, live.counter) == 0;
	if (!group_dead)
		return 0;
	fill_hdr(&e.hdr, KT_EV_EXIT, pid_tgid);
	e.exit_code = BPF_CORE_READ(task, exit_code);
	BPF_CORE_READ_STR_INTO(&e.comm, task, group_leader, comm);
	rb_output(&e, sizeof(e));
	bpf_map_delete_elem(&procs, &tgid);
	bpf_for_each_map_elem(&fds, forget_tgid_fd, &tgid, 0);
	return 0;
}

/* ---- richer strategies: kprobe / fentry (load everywhere they verify; attach where the kernel allows) ---- */

static __always_inline int on_copy(__u32 dir, __u64 uaddr, __u64 len)
{
	struct enter_state *st = state_lookup();
	struct kt_copy_event e = {};

	if (!st || !st->i.active)
		return 0;
	fill_hdr(&e.hdr, KT_EV_COPY, bpf_get_current_pid_tgid());
	e.uaddr = uaddr;
	e.len = len;
	e.dir = dir;
	e.cmd = st->i.cmd;
	e.fd = st->i.fd;
	rb_output(&e, sizeof(e));
	return 0;
}

static __always_inline int on_vcpu_run(struct kvm_vcpu *vcpu)
{
	struct enter_state *st = state_lookup();

	if (st && st->i.active)
		st->i.vcpu = (__u64)vcpu;
	return 0;
}

SEC("kprobe/_copy_from_user")
int BPF_KPROBE(kt_copy_from_user_kprobe, void *to, const void *from, unsigned long n)
{
	return on_copy(KT_COPY_FROM_USER, (__u64)from, n);
}

SEC("kprobe/_copy_to_user")
int BPF_KPROBE(kt_copy_to_user_kprobe, void *to, const void *from, unsigned long n)
{
	return on_copy(KT_COPY_TO_USER, (__u64)to, n);
}

SEC("kprobe/kvm_arch_vcpu_ioctl_run")
int BPF_KPROBE(kt_vcpu_run_kprobe, struct kvm_vcpu *vcpu)
{
	return on_vcpu_run(vcpu);
}

SEC("fentry/_copy_from_user")
int BPF_PROG(kt_copy_from_user_fentry, void *to, const void *from, unsigned long n)
{
	return on_copy(KT_COPY_FROM_USER, (__u64)from, n);
}

SEC("fentry/_copy_to_user")
int BPF_PROG(kt_copy_to_user_fentry, void *to, const void *from, unsigned long n)
{
	return on_copy(KT_COPY_TO_USER, (__u64)to, n);
}

SEC("fentry/kvm_arch_vcpu_ioctl_run")
int BPF_PROG(kt_vcpu_run_fentry, struct kvm_vcpu *vcpu)
{
	return on_vcpu_run(vcpu);
}

/* The rest of the fd lifecycle (dup family, close_range, execve, openat2, fork, thread exit). */
#include "kt_fd_track.bpf.h"
