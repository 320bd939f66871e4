// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * kvm-trace BPF side, copy observers: the user copies a KVM ioctl's handler does, one KT_EV_COPY record each,
 * seen at the entry of the kernel function doing it. Every hook has a kprobe and an fentry sibling; user
 * space loads and attaches each one on its own (src/bpf/hooks.ts), because kernels differ per function:
 * on Debian's 6.1 and 6.12 _copy_{from,to}_user take neither a kprobe (refused) nor fentry (not an ftrace
 * site: EBUSY), while memdup_user and vmemdup_user — through which KVM copies most of what it reads
 * (kvm_regs, kvm_sregs, kvm_msrs entries, kvm_cpuid2 entries, ...) — take both. Where _copy_from_user is
 * traceable the memdup hooks stay detached: their copy goes through it and would be seen twice.
 * Never attached in aggregate-only mode; the check below makes sure of it anyway.
 */
#ifndef __KT_COPY_BPF_H
#define __KT_COPY_BPF_H

#include <bpf/bpf_tracing.h>
#include "kt_helpers.bpf.h"

static __always_inline int on_copy(__u32 hook, __u32 dir, __u64 uaddr, __u64 len)
{
	struct enter_state *st;
	struct kt_copy_event e = {};

	if (aggregate_only)
		return 0;
	st = state_lookup();
	if (!st || !st->i.active)
		return 0;
	fill_hdr(&e.hdr, KT_EV_COPY, bpf_get_current_pid_tgid());
	e.uaddr = uaddr;
	e.len = len;
	e.dir = dir;
	e.cmd = st->i.cmd;
	e.fd = st->i.fd;
	e.hook = hook;
	rb_output(&e, sizeof(e));
	return 0;
}

SEC("kprobe/_copy_from_user")
int BPF_KPROBE(kt_copy_from_user_kprobe, void *to, const void *from, unsigned long n)
{
	return on_copy(KT_HOOK_COPY_FROM_USER, KT_COPY_FROM_USER, (__u64)from, n);
}

SEC("kprobe/_copy_to_user")
int BPF_KPROBE(kt_copy_to_user_kprobe, void *to, const void *from, unsigned long n)
{
	return on_copy(KT_HOOK_COPY_TO_USER, KT_COPY_TO_USER, (__u64)to, n);
}

SEC("kprobe/memdup_user")
int BPF_KPROBE(kt_memdup_user_kprobe, const void *src, size_t len)
{
	return on_copy(KT_HOOK_MEMDUP_USER, KT_COPY_FROM_USER, (__u64)src, len);
}

SEC("kprobe/vmemdup_user")
int BPF_KPROBE(kt_vmemdup_user_kprobe, const void *src, size_t len)
{
	return on_copy(KT_HOOK_VMEMDUP_USER, KT_COPY_FROM_USER, (__u64)src, len);
}

/* fentry siblings read their arguments with bpf_get_func_arg() rather than BPF_PROG's typed ctx: 6.1's
 * verifier refuses a typed read of a `const void __user *` argument ("arg0 type UNKNOWN is not a struct"). */
static __always_inline int on_copy_fentry(void *ctx, __u32 hook, __u32 dir, __u32 uaddr_arg, __u32 len_arg)
{
	__u64 uaddr = 0, len = 0;

	if (bpf_get_func_arg(ctx, uaddr_arg, &uaddr) || bpf_get_func_arg(ctx, len_arg, &len))
		return 0;
	return on_copy(hook, dir, uaddr, len);
}

SEC("fentry/_copy_from_user")
int kt_copy_from_user_fentry(void *ctx)
{
	return on_copy_fentry(ctx, KT_HOOK_COPY_FROM_USER, KT_COPY_FROM_USER, 1, 2);
}

SEC("fentry/_copy_to_user")
int kt_copy_to_user_fentry(void *ctx)
{
	return on_copy_fentry(ctx, KT_HOOK_COPY_TO_USER, KT_COPY_TO_USER, 0, 2);
}

SEC("fentry/memdup_user")
int kt_memdup_user_fentry(void *ctx)
{
	return on_copy_fentry(ctx, KT_HOOK_MEMDUP_USER, KT_COPY_FROM_USER, 0, 1);
}

SEC("fentry/vmemdup_user")
int kt_vmemdup_user_fentry(void *ctx)
{
	return on_copy_fentry(ctx, KT_HOOK_VMEMDUP_USER, KT_COPY_FROM_USER, 0, 1);
}

#endif /* __KT_COPY_BPF_H */
