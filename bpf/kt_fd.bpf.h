// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * kvm-trace BPF side: the KVM fd lifecycle — /dev/kvm opened, a tracked fd mmapped (a vCPU's kvm_run) or
 * closed, a process holding KVM fds exited. The fds created by KVM ioctls are learnt in kt_ioctl.bpf.h.
 */
#ifndef __KT_FD_BPF_H
#define __KT_FD_BPF_H

#include "kt_helpers.bpf.h"
#include "kt_vcpu.bpf.h"

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

/* open/openat returned: is the new fd /dev/kvm? Decided by the file's device number (no path strings:
 * relative paths, symlinks, bind mounts and other names for the node all count). Fires for every open in the system: the failed
 * ones and filtered processes leave at once. */
static __always_inline int on_open_exit(long ret)
{
	__u64 pid_tgid;
	__u32 tgid;

	if (ret < 0)
		return 0;
	pid_tgid = bpf_get_current_pid_tgid();
	tgid = pid_tgid >> 32;
	if (!trace_allowed(tgid))
		return 0;
	if (!is_kvm_dev_file(file_of_fd(ret)))
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
	if (ret != -9 /* EBADF */) {
		bpf_map_delete_elem(&fds, &key);
		bpf_map_delete_elem(&pending, &key);
	}
	emit_fd(pid_tgid, key.fd, KT_FD_CLOSE, k, ret);
	return 0;
}

static long forget_tgid_fd(struct bpf_map *map, struct fd_key *key, __u32 *kind, __u32 *tgid)
{
	if (key->tgid == *tgid) {
		bpf_map_delete_elem(map, key);
		bpf_map_delete_elem(&pending, key);
	}
	return 0;
}

/* A process that held KVM fds exited: report it (user space lists what it never closed) and forget
 * its fds. Fires for every thread exit of the system: one hash lookup, then out. A thread that is not the
 * last of such a process is reported too (KT_EV_THREAD_EXIT): user space drops its per-thread state. */
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
	if (!group_dead) {
		fill_hdr(&e.hdr, KT_EV_THREAD_EXIT, pid_tgid);
		e.exit_code = BPF_CORE_READ(task, exit_code);
		bpf_get_current_comm(&e.comm, sizeof(e.comm));
		rb_output(&e, sizeof(e));
		return 0;
	}
	fill_hdr(&e.hdr, KT_EV_EXIT, pid_tgid);
	e.exit_code = BPF_CORE_READ(task, exit_code);
	BPF_CORE_READ_STR_INTO(&e.comm, task, group_leader, comm);
	rb_output(&e, sizeof(e));
	bpf_map_delete_elem(&procs, &tgid);
	bpf_for_each_map_elem(&fds, forget_tgid_fd, &tgid, 0);
	return 0;
}

#endif /* __KT_FD_BPF_H */
