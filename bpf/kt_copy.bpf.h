// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * kvm-trace BPF side, richer strategies (kprobe / fentry): the user copies done inside a KVM ioctl, and the
 * vCPU kvm_arch_vcpu_ioctl_run was called with. Loaded everywhere they verify; attached where the kernel
 * lets them.
 */
#ifndef __KT_COPY_BPF_H
#define __KT_COPY_BPF_H

#include <bpf/bpf_tracing.h>
#include "kt_helpers.bpf.h"

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

#endif /* __KT_COPY_BPF_H */
