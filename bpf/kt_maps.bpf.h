// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * kvm-trace BPF side: everything the programs share — the rodata filters user space writes between open
 * and load, the maps, the per-thread state of an ioctl in flight, and the one kfunc the object may call.
 * No untyped __ksym: one would make libbpf read all of /proc/kallsyms at every load (40-90 ms of attach);
 * KVM files are told apart by what the file itself says (kt_vcpu.bpf.h).
 */
#ifndef __KT_MAPS_BPF_H
#define __KT_MAPS_BPF_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "kvm_trace.h"

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
/* The kernel has the bpf_rdonly_cast kfunc (6.2+) and lets tracepoint programs call it: loads through kernel
 * pointers held as numbers are then single instructions; without it (Debian 12's 6.1) each is a
 * bpf_probe_read_kernel() with the same CO-RE offsets. User space sets it from a load probe (features.ts);
 * the verifier drops the branch not taken, so the kfunc call is never checked where it does not exist. */
const volatile bool have_rdonly_cast = false;

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

/* Per-thread state of a KVM ioctl in flight, from sys_enter to sys_exit. Everything about the fd is resolved
 * at enter: by the exit another thread may have closed or dup2()ed over it. */
struct enter_info {
	__u64 enter_ns;
	__u64 arg;
	__u64 vcpu;    /* KVM_RUN: struct kvm_vcpu * behind fd, else 0 */
	__u64 run;     /* KVM_RUN: vcpu->run (kernel address of struct kvm_run), else 0 */
	__s32 vcpu_id; /* KVM_RUN: vcpu->vcpu_id, else -1 */
	__u32 fd_kind; /* enum kt_fd_kind of fd (KVM_RUN: KT_FD_VCPU when the vCPU was found) */
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

/* Turns a kernel address held as a number back into a typed, read-only, untrusted BTF pointer (6.2+). Weak:
 * libbpf leaves it unresolved (zero) on older kernels, where have_rdonly_cast keeps every call dead code. */
extern void *bpf_rdonly_cast(const void *obj, __u32 btf_id) __ksym __weak;

#endif /* __KT_MAPS_BPF_H */
