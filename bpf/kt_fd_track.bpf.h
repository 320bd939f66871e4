// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * kvm-trace BPF side: the KVM fd table kept exact through everything besides open and close that makes or
 * ends an fd (issue 10). Without these, the `fds` map keeps stale entries: after dup2 onto a tracked
 * number, close_range, or an execve that closed the O_CLOEXEC KVM fds, an offset-0 mmap of an unrelated
 * file on the reused number would be reported as a vCPU's kvm_run; a forked child's copies would be unknown.
 *
 *   kt_dup_exit, kt_dup2_exit, kt_dup3_exit, kt_fcntl_exit (F_DUPFD, F_DUPFD_CLOEXEC)
 *                       new fd takes the old one's kind; a tracked fd replaced by an untracked file is forgotten
 *   kt_close_range_exit every tracked fd in [first, last] is closed (CLOSE_RANGE_CLOEXEC only marks them)
 *   kt_execve_exit, kt_execveat_exit
 *                       after a successful execve, a tracked fd whose file is gone was O_CLOEXEC: closed.
 *                       Read from the fd table itself, so F_SETFD / dup3 / F_DUPFD_CLOEXEC need no tracking
 *   kt_openat2_exit     openat2 of /dev/kvm, like open/openat
 *   kt_process_fork     a forked child (not a thread) gets copies of the parent's tracked fds
 * (Thread exits are kt_process_exit's, in kt_fd.bpf.h: one program on sched_process_exit, not two.)
 *
 * Every program leaves at once unless the process holds tracked fds (one `procs` lookup), except fcntl,
 * which first checks its command. Not followed: fds received over a unix socket (SCM_RIGHTS) or taken with
 * pidfd_getfd, and close_range(CLOSE_RANGE_UNSHARE) is taken as closing for the whole process (the fds map
 * is per process; the calling thread's private table is not modelled).
 *
 * Included by kvm_trace.bpf.c after the open/close programs: it uses the fds and procs maps, track_fd,
 * tracked_kind, emit_fd, on_open_exit, file_of_fd, fill_hdr, rb_output and trace_allowed from there.
 */
#ifndef __KT_FD_TRACK_BPF_H
#define __KT_FD_TRACK_BPF_H

#define KT_F_DUPFD 0             /* uapi fcntl.h */
#define KT_F_DUPFD_CLOEXEC 1030  /* F_LINUX_SPECIFIC_BASE + 6 */
#define KT_CLOSE_RANGE_CLOEXEC 4 /* uapi close_range.h: 1 << 2 */

const struct kt_fork_event *unused_kt_fork_event __attribute__((unused));

static __always_inline struct pt_regs *user_regs(void)
{
	return (struct pt_regs *)bpf_task_pt_regs(bpf_get_current_task_btf());
}

static __always_inline bool holds_tracked(__u32 tgid)
{
	return bpf_map_lookup_elem(&procs, &tgid) != NULL;
}

/* ---- dup family ---- */

/* `ret` = the new fd, the old one is the syscall's first argument. */
static __always_inline int on_dup_exit(long ret)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	__u32 tgid = pid_tgid >> 32, kind, replaced;
	struct fd_key key = { .tgid = tgid };
	__s32 oldfd;

	if (ret < 0 || !holds_tracked(tgid))
		return 0;
	oldfd = (__s32)user_regs()->di;
	if (oldfd == ret) /* dup2(fd, fd): nothing changes */
		return 0;
	kind = tracked_kind(tgid, oldfd);
	replaced = tracked_kind(tgid, ret);
	if (kind == KT_FD_UNKNOWN && replaced == KT_FD_UNKNOWN)
		return 0;
	key.fd = ret;
	if (replaced != KT_FD_UNKNOWN) /* the file that was at `ret` is closed: no return waits on it any more */
		bpf_map_delete_elem(&pending, &key);
	if (kind != KT_FD_UNKNOWN)
		track_fd(tgid, ret, kind);
	else
		bpf_map_delete_elem(&fds, &key);
	emit_fd(pid_tgid, oldfd, KT_FD_DUP, kind, ret);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_dup")
int kt_dup_exit(struct trace_event_raw_sys_exit *ctx)
{
	return on_dup_exit(ctx->ret);
}

SEC("tracepoint/syscalls/sys_exit_dup2")
int kt_dup2_exit(struct trace_event_raw_sys_exit *ctx)
{
	return on_dup_exit(ctx->ret);
}

SEC("tracepoint/syscalls/sys_exit_dup3")
int kt_dup3_exit(struct trace_event_raw_sys_exit *ctx)
{
	return on_dup_exit(ctx->ret);
}

SEC("tracepoint/syscalls/sys_exit_fcntl")
int kt_fcntl_exit(struct trace_event_raw_sys_exit *ctx)
{
	__u32 cmd;

	if (ctx->ret < 0)
		return 0;
	cmd = (__u32)user_regs()->si;
	if (cmd != KT_F_DUPFD && cmd != KT_F_DUPFD_CLOEXEC)
		return 0;
	return on_dup_exit(ctx->ret);
}

/* ---- close_range ---- */

struct close_range_ctx {
	__u64 pid_tgid;
	__u32 first;
	__u32 last;
};

static long close_in_range(struct bpf_map *map, struct fd_key *key, __u32 *kind, struct close_range_ctx *c)
{
	__u32 k = *kind;

	if (key->tgid != (__u32)(c->pid_tgid >> 32) || key->fd < 0 || (__u32)key->fd < c->first ||
	    (__u32)key->fd > c->last)
		return 0;
	emit_fd(c->pid_tgid, key->fd, KT_FD_CLOSE_RANGE, k, 0);
	bpf_map_delete_elem(map, key);
	bpf_map_delete_elem(&pending, key); /* aggregate mode: a return waiting on this vCPU fd */
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_close_range")
int kt_close_range_exit(struct trace_event_raw_sys_exit *ctx)
{
	struct close_range_ctx c = { .pid_tgid = bpf_get_current_pid_tgid() };
	struct pt_regs *regs;

	if (ctx->ret != 0 || !holds_tracked(c.pid_tgid >> 32))
		return 0;
	regs = user_regs();
	if (regs->dx & KT_CLOSE_RANGE_CLOEXEC) /* only marks them close-on-exec: execve's check sees the rest */
		return 0;
	c.first = (__u32)regs->di;
	c.last = (__u32)regs->si;
	bpf_for_each_map_elem(&fds, close_in_range, &c, 0);
	return 0;
}

/* ---- execve ---- */

static long close_if_gone(struct bpf_map *map, struct fd_key *key, __u32 *kind, __u64 *pid_tgid)
{
	__u32 k = *kind;

	if (key->tgid != (__u32)(*pid_tgid >> 32) || file_of_fd(key->fd))
		return 0;
	emit_fd(*pid_tgid, key->fd, KT_FD_EXEC_CLOSE, k, 0);
	bpf_map_delete_elem(map, key);
	bpf_map_delete_elem(&pending, key);
	return 0;
}

/* A successful execve returns 0 in the new image, its O_CLOEXEC fds already closed and nothing of the
 * new program run yet: a tracked fd with no file now was closed by the exec, one still open is the same
 * file (it was not O_CLOEXEC). */
static __always_inline int on_exec_exit(long ret)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();

	if (ret != 0 || !holds_tracked(pid_tgid >> 32))
		return 0;
	bpf_for_each_map_elem(&fds, close_if_gone, &pid_tgid, 0);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_execve")
int kt_execve_exit(struct trace_event_raw_sys_exit *ctx)
{
	return on_exec_exit(ctx->ret);
}

SEC("tracepoint/syscalls/sys_exit_execveat")
int kt_execveat_exit(struct trace_event_raw_sys_exit *ctx)
{
	return on_exec_exit(ctx->ret);
}

/* ---- openat2 ---- */

SEC("tracepoint/syscalls/sys_exit_openat2")
int kt_openat2_exit(struct trace_event_raw_sys_exit *ctx)
{
	return on_open_exit(ctx->ret);
}

/* ---- fork ---- */

struct fork_ctx {
	__u32 parent;
	__u32 child;
	__u32 copied; /* 1 once a tracked fd was copied (a flag, not a count: a count the verifier follows
		       * through every callback iteration makes the program too complex to verify) */
};

static long copy_to_child(struct bpf_map *map, struct fd_key *key, __u32 *kind, struct fork_ctx *c)
{
	struct fd_key child = { .tgid = c->child, .fd = key->fd };
	__u32 k = *kind;

	if (key->tgid != c->parent)
		return 0;
	if (bpf_map_update_elem(map, &child, &k, BPF_ANY) == 0)
		c->copied = 1;
	return 0;
}

/* tp_btf, not the tracepoint: only the task pointers tell a new process from a new thread (CLONE_THREAD).
 * Runs in the parent, before the child is first scheduled. A child sharing the parent's table
 * (CLONE_FILES without CLONE_THREAD) is treated as holding copies. */
SEC("tp_btf/sched_process_fork")
int BPF_PROG(kt_process_fork, struct task_struct *parent, struct task_struct *child)
{
	struct fork_ctx c = { .parent = parent->tgid, .child = child->tgid };
	struct kt_fork_event e = {};
	__u32 one = 1;

	if (c.child == c.parent || !holds_tracked(c.parent) || !trace_allowed(c.child))
		return 0;
	bpf_for_each_map_elem(&fds, copy_to_child, &c, 0);
	if (!c.copied)
		return 0;
	bpf_map_update_elem(&procs, &c.child, &one, BPF_ANY);
	fill_hdr(&e.hdr, KT_EV_FORK, bpf_get_current_pid_tgid());
	e.child_pid = c.child;
	e.inherited = c.copied;
	bpf_get_current_comm(&e.comm, sizeof(e.comm));
	rb_output(&e, sizeof(e));
	return 0;
}

#endif /* __KT_FD_TRACK_BPF_H */
