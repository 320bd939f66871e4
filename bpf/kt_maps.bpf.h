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
/* Aggregate mode: MMIO exits key VMM handling time by the 1 << mmio_granule_shift byte range holding the address
 * (src/analysis/exit-key.ts MMIO_GRANULE: a page). */
const volatile __u32 mmio_granule_shift = 12;
/* The hardware-exit programs (kt_hw.bpf.h: kvm:kvm_entry / kvm:kvm_exit) are loaded: KVM_RUN counts its
 * in-kernel exits and guest time (KT_F_HW). Off by default: each costs a program run per hardware exit. */
const volatile bool hw_hooks = false;

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
	__u64 kvm;     /* KVM_RUN: vcpu->kvm, else 0 */
	__s32 vcpu_id; /* KVM_RUN: vcpu->vcpu_id, else -1 */
	__u32 fd_kind; /* enum kt_fd_kind of fd (KVM_RUN: KT_FD_VCPU when the vCPU was found) */
	__s32 fd;
	__u32 cmd;
	__u16 flags;
	__u16 in_len;
	__u32 active; /* 1 between enter and exit */
	/* KVM_RUN with the hardware-exit hooks (kt_hw.bpf.h), reset at enter: */
	__u32 hw_exits;   /* kvm:kvm_exit seen during the call */
	__u32 hw_reason;  /* the last one's exit_reason and isa */
	__u32 hw_isa;
	__u64 guest_ns;   /* summed kvm_entry → kvm_exit */
	__u64 entry_ns;   /* the last kvm_entry not yet followed by its kvm_exit, else 0 */
	__u64 hw_exit_ns; /* the last kvm_exit not yet followed by a kvm_entry or the return, else 0 */
};

/* Aggregate mode: a KVM_RUN's return waiting for the next KVM_RUN on its vCPU (VMM handling time). Kept in the
 * returning thread's state (no map operation on the hot path: the thread that returns is, in every VMM we
 * know, the one that re-enters), spilled to the "pending" hash when the thread runs another vCPU first. The
 * vCPU is kept so a reused fd number does not time another vCPU's entry (and a dup'd fd of the same vCPU
 * does); the fd keys the spill in the hash. */
struct kt_pending {
	__u64 exit_ns; /* 0: no return waiting */
	__u64 vcpu;    /* struct kvm_vcpu * */
	__s32 fd;
	__u32 __pad;
	struct kt_handling_key key;
};

/* The state also holds the record of every ioctl but KVM_RUN while it is built: write-direction bytes go
 * straight into ev.data at enter, read-direction bytes after them at exit. Per thread, so no per-CPU
 * scratch that a preempted program could share with another. */
struct enter_state {
	struct enter_info i;
	struct kt_pending pend; /* survives from one KVM_RUN to the next */
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

/* Aggregate-only mode (kvm_trace.h: struct kt_agg_*). Per-CPU, updated with plain adds: the kernel runs
 * tracepoint programs through trace_call_bpf(), whose per-CPU bpf_prog_active guard lets no second tracepoint
 * program start on a CPU while one runs there (measured here: atomic adds cost ~20 ns more per KVM_RUN).
 * Keys name the process (and the VM and vCPU), so user space can show one row per process / VM / vCPU; the
 * all-zero key of each hash is the overflow entry, pre-inserted by user space, where what did not fit is
 * counted (and a stat says so). Sizes are set by user space before load; entries are allocated on first use. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 1024);
	__type(key, struct kt_agg_ioctl_key); /* {tgid, request number}; _IOC_NR alone is ambiguous */
	__type(value, struct kt_agg_ioctl);
} agg_ioctls SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 1024);
	__type(key, struct kt_agg_vcpu_key);
	__type(value, struct kt_agg_vcpu);
} agg_vcpus SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 4096);
	__type(key, struct kt_handling_key);
	__type(value, struct kt_agg_hist);
} agg_handling SEC(".maps");

/* Hardware exits (hw_hooks), full capture and aggregate mode alike: per vCPU and exit reason. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 1024);
	__type(key, struct kt_hw_key);
	__type(value, struct kt_agg_hist);
} agg_hw SEC(".maps");

/* VMs created while attached (aggregate mode): struct kvm * → who created it, when. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u64);
	__type(value, struct kt_agg_vm);
} agg_vms SEC(".maps");

/* A zeroed value to insert from (the largest of the agg_* values; too big for the BPF stack); never written. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct kt_agg_vcpu);
} agg_zero SEC(".maps");

/* Aggregate mode: the hash of vCPU-fd returns not kept in their thread's state (enter_state.pend) because the
 * thread went on to run another vCPU (a thread driving several vCPUs). Keyed by (tgid, fd) as the full
 * capture's tracker keys a vCPU. Deleted when the fd is closed (close, dup2 over it, close_range, exec) or
 * the process exits. A thread's own state keeps its return through such a close: it names the vCPU, not the
 * fd, so a copy of the fd (dup) that re-enters the same vCPU is timed and another vCPU on a reused number
 * does not match it; a vCPU freed and another allocated at the same address is caught by last_ran_it (a new
 * vCPU's pid is unset until its first KVM_RUN). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 4096);
	__type(key, struct fd_key);
	__type(value, struct kt_pending);
} pending SEC(".maps");

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
