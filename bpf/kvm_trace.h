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
	KT_F_HW = 1 << 6,         /* KVM_RUN: hw_exits / guest_ns are counted (hardware-exit hooks loaded, enter seen) */
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
	/* aggregate mode: a (vCPU, exit key) handling histogram did not fit agg_handling: kept under the exit
	 * reason alone ("IO other") */
	KT_STAT_HANDLING_FOLDED = 4,
	/* ... and not even that fitted: counted in the overflow entry (all-zero key) */
	KT_STAT_HANDLING_OVERFLOW = 5,
	/* a KVM_RUN returned while its vCPU fd's previous return was still waiting for a re-entry whose enter
	 * was not seen: that re-entry is not timed */
	KT_STAT_HANDLING_UNTIMED = 6,
	/* a vCPU (or hardware-exit) key did not fit agg_vcpus (agg_hw): counted in the overflow entry */
	KT_STAT_VCPU_OVERFLOW = 7,
	KT_STAT_HW_OVERFLOW = 8,
	KT_STAT_IOCTL_OVERFLOW = 9, /* a (process, request) key did not fit agg_ioctls */
	KT_STAT_MAX = 10,
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
	__u32 hw_exits;    /* KVM_RUN (KT_F_HW): in-kernel (hardware) exits during the call, kvm:kvm_exit */
	__u32 __pad1;
	__u64 guest_ns;    /* KVM_RUN (KT_F_HW): time in the guest, kvm:kvm_entry → kvm:kvm_exit, summed */
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

/* Latency histogram (struct kt_agg_ioctl, kt_agg_hist): log-linear, 4 buckets per power of two. Bucket b < 4
 * holds exactly b ns; above, b = (e - 1) * 4 + m for e = floor(log2(ns)) and m = the 2 bits below the top
 * one, so a bucket is at most a quarter-octave wide (a percentile read from it is within ~12 %). The last
 * bucket ([7.5 s, 8.6 s)) also takes everything longer; max_ns keeps the true maximum. */
#define KT_AGG_BUCKETS 128
/* Exit reasons per vCPU: kvm_run.exit_reason capped to the last slot (that value or more). */
#define KT_AGG_REASONS 64

/* Counters of one request (struct kt_agg_ioctl_key) or of one vCPU's KVM_RUN calls (struct kt_agg_vcpu).
 * Per-CPU map values: user space sums the CPUs. */
struct kt_agg_ioctl {
	__u64 count;    /* calls that returned */
	__u64 errors;   /* ... with a negative return value */
	__u64 no_enter; /* ... seen without their enter (attached mid-call): counted, no latency */
	__u64 sum_ns;   /* total latency of the calls with an enter */
	__u64 max_ns;
	__u64 hist[KT_AGG_BUCKETS];
};

/* Key of the "agg_ioctls" hash: every KVM ioctl but KVM_RUN, per process and request number. The all-zero key
 * collects what did not fit the hash (pre-inserted by user space). */
struct kt_agg_ioctl_key {
	__u32 tgid;
	__u32 cmd;
};

/* One vCPU: key of the "agg_vcpus" hash (and the first part of the handling and hardware-exit keys). The
 * all-zero key collects the KVM_RUNs of vCPUs that did not fit (KT_STAT_VCPU_OVERFLOW). */
struct kt_agg_vcpu_key {
	__u32 tgid;
	__s32 vcpu_id; /* vcpu->vcpu_id; -1: the fd was not a vCPU we could resolve */
	__u64 kvm;     /* vcpu->kvm: the VM's kernel address (user space maps it to a VM index, struct kt_agg_vm) */
};

/* Value of "agg_vcpus": one vCPU's KVM_RUN calls. */
struct kt_agg_vcpu {
	struct kt_agg_ioctl run;       /* KVM_RUN count, errors, latency */
	__u64 reasons[KT_AGG_REASONS]; /* kvm_run.exit_reason (capped) after KVM_RUN returned */
	/* Hardware-exit hooks (KT_F_HW): over the hw_runs calls that had them, the in-kernel exits absorbed, the
	 * time in the guest, and the calls' summed latency (time in KVM = hw_run_ns - guest_ns). */
	__u64 hw_runs;
	__u64 hw_exits;
	__u64 hw_max_exits; /* most in-kernel exits one KVM_RUN absorbed */
	__u64 guest_ns;
	__u64 hw_run_ns;
};

/* What a KVM_RUN came back with, as the VMM's dispatch sees it (src/analysis/exit-key.ts builds the same
 * key from a full capture's records): the reason; for IO the port and direction; for MMIO the granule-aligned
 * address range (rodata mmio_granule_shift) and direction; for a failed KVM_RUN that left no reason, its errno. */
enum kt_exit_key_kind {
	KT_XK_REASON = 0, /* reason only */
	KT_XK_IO = 1,     /* port, dir = kvm_run.io.direction (KVM_EXIT_IO_IN 0 / OUT 1) */
	KT_XK_MMIO = 2,   /* addr = phys_addr rounded down, dir = kvm_run.mmio.is_write */
	KT_XK_ERROR = 3,  /* reason = errno of the failed call */
	KT_XK_FOLDED = 4, /* the detailed key did not fit agg_handling: every key of this reason ("IO other") */
};

struct kt_exit_key {
	__u32 reason;
	__u16 port;
	__u8 dir;
	__u8 kind; /* enum kt_exit_key_kind */
	__u64 addr;
};

/* Key of "agg_handling": VMM handling time (KVM_RUN return → the same vCPU's next KVM_RUN) per vCPU and exit. */
struct kt_handling_key {
	struct kt_agg_vcpu_key vcpu;
	struct kt_exit_key exit;
};

/* Key of "agg_hw": in-kernel (hardware) exits per vCPU and exit reason (kvm:kvm_exit's exit_reason and isa). */
struct kt_hw_key {
	struct kt_agg_vcpu_key vcpu;
	__u32 isa;    /* KVM_ISA_VMX 1, KVM_ISA_SVM 2 */
	__u32 reason; /* VMX basic exit reason (with its flag bits) or SVM exit code */
};

/* A duration histogram: value of "agg_handling" and "agg_hw" (the time KVM spent on the exit, kvm_exit → the
 * next kvm_entry or the return to user space). */
struct kt_agg_hist {
	__u64 count;
	__u64 sum_ns;
	__u64 min_ns; /* valid when count > 0 */
	__u64 max_ns;
	__u64 hist[KT_AGG_BUCKETS];
};

/* Value of "agg_vms", keyed by struct kvm * (the VM's kernel address): the process and fd that created it, and
 * when. User space numbers a process's VMs in creation order from these, as the decoder does for records. */
struct kt_agg_vm {
	__u32 tgid;
	__s32 fd;
	__u64 created_ns;
};

#endif /* __KVM_TRACE_H */
