// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * kvm-trace BPF side: the KVM ioctl itself — sys_enter resolves the fd (kind; KVM_RUN: the vCPU and its
 * kvm_run, kt_vcpu.bpf.h) and reads a write-direction argument (with its flexible-array entries) into the
 * thread's state; sys_exit folds everything into one record (KVM_RUN: kt_run.bpf.h) or, in aggregate-only
 * mode, into the counters (kt_aggregate.bpf.h).
 */
#ifndef __KT_IOCTL_BPF_H
#define __KT_IOCTL_BPF_H

#include "kt_helpers.bpf.h"
#include "kt_vcpu.bpf.h"
#include "kt_run.bpf.h"
#include "kt_aggregate.bpf.h"
#include "kt_hw.bpf.h"

/* The hardware-exit counters of a KVM_RUN start at zero (KT_F_HW when the kt_hw.bpf.h programs are loaded). */
static __always_inline void hw_reset(struct enter_info *in, bool counted)
{
	in->hw_exits = 0;
	in->guest_ns = 0;
	in->entry_ns = 0;
	in->hw_exit_ns = 0;
	if (counted && hw_hooks && in->cmd == KT_KVM_RUN)
		in->flags |= KT_F_HW;
}

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

/* A KVM ioctl (type 0xAE) of a traced process starts. */
SEC("tracepoint/syscalls/sys_enter_ioctl")
int kt_ioctl_enter(struct trace_event_raw_sys_enter *ctx)
{
	__u32 cmd = (__u32)ctx->args[1], tgid;
	struct enter_state *st;
	__u32 size, n;

	if (KT_IOC_TYPE(cmd) != KVMIO)
		return 0;
	tgid = bpf_get_current_pid_tgid() >> 32;
	if (!trace_allowed(tgid))
		return 0;
	st = state_create();
	if (!st) {
		stat_inc(KT_STAT_STATE_UNAVAILABLE);
		return 0;
	}
	st->i.enter_ns = bpf_ktime_get_ns();
	st->i.fd = (__s32)ctx->args[0];
	st->i.cmd = cmd;
	st->i.arg = ctx->args[2];
	st->i.flags = 0;
	st->i.in_len = 0;
	resolve_fd(&st->i, tgid);
	hw_reset(&st->i, true);
	st->i.active = 1;
	if (aggregate_only) { /* no record: the argument is not read */
		if (cmd == KT_KVM_RUN)
			agg_reenter(st, tgid);
		return 0;
	}

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

/* Every other KVM ioctl: built in the thread's state record (in bytes already at the start of data[])
 * and output with its exact length. */
static __always_inline void emit_ioctl(struct enter_state *st, __u64 pid_tgid, long ret)
{
	struct enter_info *in = &st->i;
	struct kt_ioctl_event *e = &st->ev;
	__u32 tgid = pid_tgid >> 32;
	__u32 in_len = in->in_len, out_len = 0, size, n, len;

	fill_ioctl(e, in, pid_tgid, ret);
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
			if (hw_hooks) /* hardware exits are keyed by VM */
				agg_vm_created(tgid, ret, bpf_ktime_get_ns());
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

/* A KVM ioctl returned: its one record (or, aggregate-only, the counters). */
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
			stat_inc(KT_STAT_STATE_UNAVAILABLE);
			return 0;
		}
		st->i.enter_ns = 0;
		st->i.fd = (__s32)regs->di;
		st->i.cmd = cmd;
		st->i.arg = regs->dx;
		st->i.flags = KT_F_NO_ENTER;
		st->i.in_len = 0;
		resolve_fd(&st->i, pid_tgid >> 32);
		hw_reset(&st->i, false);
	}
	if (st->i.flags & KT_F_HW)
		hw_finish(&st->i, bpf_ktime_get_ns());
	if (aggregate_only)
		agg_ioctl(st, pid_tgid, ret);
	else if (st->i.cmd == KT_KVM_RUN)
		emit_run(&st->i, pid_tgid, ret);
	else
		emit_ioctl(st, pid_tgid, ret);
	st->i.active = 0;
	return 0;
}

#endif /* __KT_IOCTL_BPF_H */
