/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * kvm-trace: the one event layout shared by the BPF programs (kvm_trace.bpf.c) and the TypeScript
 * decoder (src/decode/event-layout.ts). Layout only: no logic. test/event-layout.test.ts reads the
 * compiled object's BTF and proves the decoder's offsets and sizes equal these.
 */
#ifndef __KVM_TRACE_H
#define __KVM_TRACE_H

#define KT_TASK_COMM_LEN 16
/* Bytes of an ioctl argument captured per direction; larger arguments are truncated (KT_F_*_TRUNC). */
#define KT_DATA_MAX 512
/* KVM_RUN: bytes of struct kvm_run copied after the call (header + exit union, below kvm_valid_regs). */
#define KT_RUN_SNAP 288
/* KVM_RUN exits whose details fit (IO, MMIO, HLT, INTR, SHUTDOWN, IRQ_WINDOW_OPEN, X86_RDMSR/WRMSR) copy only
 * the first KT_RUN_SNAP_SHORT bytes (header + start of the exit union): out_len tells which. */
#define KT_RUN_SNAP_SHORT 64

enum kt_event_type {
	KT_EV_IOCTL = 1, /* one record per KVM ioctl (type 0xAE), everything about it folded in */
	KT_EV_FD = 2,    /* open of /dev/kvm, close of a tracked KVM fd */
	KT_EV_MMAP = 3,  /* mmap of a tracked KVM fd (a vCPU's kvm_run) */
	KT_EV_EXIT = 4,  /* a process that held KVM fds exited */
	KT_EV_COPY = 5,  /* a user copy observed inside a KVM ioctl (kprobe/fentry hooks, enum kt_copy_hook) */
	KT_EV_FORK = 6,  /* a process holding KVM fds forked: the child holds copies of them */
	KT_EV_THREAD_EXIT = 7, /* a thread (not the last) of a process holding KVM fds exited: kt_exit_event */
};

enum kt_flags {
	KT_F_IN_FAULT = 1 << 0,   /* reading the argument (or its flexible array's entries) at enter faulted */
	KT_F_OUT_FAULT = 1 << 1,  /* reading the argument (its entries, or kvm_run) at exit faulted */
	KT_F_IN_TRUNC = 1 << 2,   /* argument (with its flexible array's entries) larger than KT_DATA_MAX at enter */
	KT_F_OUT_TRUNC = 1 << 3,  /* argument (with its flexible array's entries) larger than KT_DATA_MAX at exit */
	KT_F_RUN = 1 << 4,        /* run_kaddr / vcpu_id / exit_reason / out data = kvm_run snapshot are valid */
	KT_F_NO_ENTER = 1 << 5,   /* exit seen without its enter (attached mid-call): enter fields are zero */
};

enum kt_fd_kind {
	KT_FD_UNKNOWN = 0,
	KT_FD_SYSTEM = 1, /* /dev/kvm */
	KT_FD_VM = 2,     /* KVM_CREATE_VM result */
	KT_FD_VCPU = 3,   /* KVM_CREATE_VCPU result */
	KT_FD_DEVICE = 4, /* KVM_CREATE_DEVICE result (kvm_create_device.fd) */
};

enum kt_fd_op {
	KT_FD_OPEN = 1,  /* openat("/dev/kvm") returned */
	KT_FD_CLOSE = 2, /* close() of a tracked fd returned */
	/* dup/dup2/dup3/fcntl(F_DUPFD, F_DUPFD_CLOEXEC) returned with a tracked fd on either side: fd is the
	 * old fd, ret the new one, kind the old fd's kind — KT_FD_UNKNOWN when an untracked file replaced the
	 * tracked fd `ret` (dup2 onto a tracked number closes it). */
	KT_FD_DUP = 3,
	KT_FD_CLOSE_RANGE = 4, /* close_range() closed this tracked fd (one record per fd; ret: its return) */
	KT_FD_EXEC_CLOSE = 5,  /* a successful execve closed this O_CLOEXEC tracked fd */
};

enum kt_copy_dir {
	KT_COPY_FROM_USER = 1,
	KT_COPY_TO_USER = 2,
};

/* The kernel function a KT_EV_COPY was observed in (each hook attaches, or not, on its own). */
enum kt_copy_hook {
	KT_HOOK_COPY_FROM_USER = 1, /* _copy_from_user(to, from, n) */
	KT_HOOK_COPY_TO_USER = 2,   /* _copy_to_user(to, from, n) */
	KT_HOOK_MEMDUP_USER = 3,    /* memdup_user(src, len): kmalloc + copy_from_user */
	KT_HOOK_VMEMDUP_USER = 4,   /* vmemdup_user(src, len): kvmalloc + copy_from_user */
};

/* Counters in the per-CPU "stats" array, indexed by this enum. */
enum kt_stat {
	KT_STAT_LOST = 0,       /* bpf_ringbuf_reserve/output failed: a record was dropped */
	KT_STAT_EVENTS = 1,     /* records submitted */
	KT_STAT_NO_ENTER = 2,   /* exits without an enter */
	/* the thread's enter state could not be had: bpf_task_storage_get() returned NULL because the storage
	 * could not be allocated or its per-CPU lock was busy (another task-storage user on this CPU) */
	KT_STAT_STATE_UNAVAILABLE = 3,
	KT_STAT_MAX = 4,
};

/* When the entries of a flexible-array argument are copied (enum kt_flex_array.when bits). */
enum kt_flex_when {
	KT_FLEX_ENTER = 1, /* the kernel copies them from the user: read at enter (KVM_SET_MSRS, KVM_SET_CPUID2) */
	KT_FLEX_EXIT = 2,  /* the kernel copies them to the user: read at exit of a successful call (KVM_GET_MSRS) */
};

/* Value of the "flex_arrays" map, keyed by the __u32 request number: an argument struct that ends in a
 * flexible array (kvm_msrs.entries[], kvm_cpuid2.entries[], ...). After the fixed _IOC_SIZE bytes are
 * read, the element count is taken from them and min(hdr_size + count * entry_size, KT_DATA_MAX) bytes are
 * read instead. Filled by user space from the kernel's BTF (src/bpf/flex-arrays.ts), never typed in. */
struct kt_flex_array {
	__u16 hdr_size;   /* offset of the flexible array: bytes before the first element */
	__u16 entry_size; /* bytes per element */
	__u16 count_off;  /* offset of the element count, inside the fixed _IOC_SIZE bytes */
	__u8 count_size;  /* 1, 2 or 4 bytes, little-endian unsigned */
	__u8 when;        /* enum kt_flex_when bits */
};

/* Every record starts with this. ts_ns is bpf_ktime_get_ns() (CLOCK_MONOTONIC) when it was emitted. */
struct kt_hdr {
	__u16 type;  /* enum kt_event_type */
	__u16 flags; /* enum kt_flags */
	__u32 cpu;
	__u64 ts_ns;
	__u32 pid; /* tgid */
	__u32 tid;
};

struct kt_ioctl_event {
	struct kt_hdr hdr; /* hdr.ts_ns: syscall exit */
	__u64 enter_ns;    /* syscall enter */
	__u64 arg;         /* third ioctl argument (user pointer or value) */
	__s64 ret;         /* return value; -errno on failure */
	__s32 fd;
	__u32 cmd;
	__u64 run_kaddr;   /* KVM_RUN (KT_F_RUN): vcpu->run, kernel address of struct kvm_run */
	__s32 vcpu_id;     /* KVM_RUN (KT_F_RUN): vcpu->vcpu_id, else -1 */
	__u32 exit_reason; /* KVM_RUN (KT_F_RUN): kvm_run.exit_reason after the call */
	__u64 pio_data;    /* KVM_RUN with KVM_EXIT_IO: first 8 bytes at kvm_run + io.data_offset */
	__u16 in_len;      /* bytes of data[] read at enter (write-direction argument; + flexible-array entries) */
	__u16 out_len;     /* bytes of data[] read at exit (read-direction argument; + entries; or kvm_run snapshot) */
	__u32 fd_kind;     /* enum kt_fd_kind as tracked in the kernel, KT_FD_UNKNOWN if not seen created */
	char comm[KT_TASK_COMM_LEN];
	/* in bytes at [0, in_len), then out bytes at [in_len, in_len + out_len). A record may be shorter than
	 * sizeof(struct kt_ioctl_event): it is always at least offsetof(data) + in_len + out_len long. */
	__u8 data[2 * KT_DATA_MAX];
};

struct kt_fd_event {
	struct kt_hdr hdr;
	__s32 fd;
	__u32 op;   /* enum kt_fd_op */
	__u32 kind; /* enum kt_fd_kind */
	__s32 ret;  /* close(): its return value; open: the fd */
	char comm[KT_TASK_COMM_LEN];
};

struct kt_mmap_event {
	struct kt_hdr hdr;
	__u64 addr; /* mmap's return value (user address) */
	__u64 len;
	__u64 pgoff; /* offset argument in bytes */
	__s32 fd;
	__u32 kind; /* enum kt_fd_kind of fd */
	__u32 prot;
	__u32 mflags;
};

struct kt_exit_event {
	struct kt_hdr hdr;
	__s32 exit_code;
	__u32 __pad;
	char comm[KT_TASK_COMM_LEN];
};

struct kt_copy_event {
	struct kt_hdr hdr;
	__u64 uaddr;
	__u64 len;
	__u32 dir; /* enum kt_copy_dir */
	__u32 cmd; /* the KVM ioctl this thread is inside */
	__s32 fd;
	__u32 hook; /* enum kt_copy_hook: where it was observed */
};

struct kt_fork_event {
	struct kt_hdr hdr; /* pid, tid: the parent */
	__u32 child_pid;   /* the child's tgid */
	__u32 inherited;   /* 1: the child inherited tracked fds (copied in the fds map); user space has the list */
	char comm[KT_TASK_COMM_LEN];
};

/* ---- aggregate-only mode (rodata aggregate_only): counters kept in the kernel, no per-ioctl records ---- */

/* Latency histogram of struct kt_agg_ioctl: log-linear, 4 buckets per power of two. Bucket b < 4 holds
 * exactly b ns; above, b = (e - 1) * 4 + m for e = floor(log2(ns)) and m = the 2 bits below the top one,
 * so a bucket is at most a quarter-octave wide (a percentile read from it is within ~12 %). The last
 * bucket ([7.5 s, 8.6 s)) also takes everything longer; max_ns keeps the true maximum. */
#define KT_AGG_BUCKETS 128
/* Exit-reason counts per vCPU: vcpu_id and exit_reason each capped to the last slot (that value or more). */
#define KT_AGG_VCPUS 64
#define KT_AGG_REASONS 64

/* Value of the per-CPU "agg_run" array (KVM_RUN, one entry) and "agg_ioctls" hash (every other KVM ioctl,
 * keyed by the __u32 request number; key 0 collects what did not fit the hash). User space sums the CPUs. */
struct kt_agg_ioctl {
	__u64 count;    /* calls that returned */
	__u64 errors;   /* ... with a negative return value */
	__u64 no_enter; /* ... seen without their enter (attached mid-call): counted, no latency */
	__u64 sum_ns;   /* total latency of the calls with an enter */
	__u64 max_ns;
	__u64 hist[KT_AGG_BUCKETS];
};

/* Value of the per-CPU "agg_exits" array, indexed by vcpu_id (capped): KVM_RUN exit reasons. */
struct kt_agg_exits {
	__u64 reasons[KT_AGG_REASONS]; /* index: kvm_run.exit_reason (capped) after KVM_RUN returned */
};

#endif /* __KVM_TRACE_H */
