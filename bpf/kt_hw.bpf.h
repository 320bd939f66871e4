// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * kvm-trace BPF side, hardware exits: kvm:kvm_entry / kvm:kvm_exit, which KVM emits around every guest entry
 * and VM exit on kvm-intel and kvm-amd (not on every backend: PVM does not). Inside a traced KVM_RUN (the
 * thread's state says one is in flight) they count the call's in-kernel exits and its time in the guest
 * (kvm_entry → kvm_exit), and time each exit in KVM (kvm_exit → the next kvm_entry, or the return to user
 * space) into a histogram per vCPU and exit reason (agg_hw). The KVM_RUN record or the aggregate gets the
 * totals at sys_exit (KT_F_HW).
 *
 * A separate hook set (rodata hw_hooks, user space loads and attaches them on their own): each program runs
 * once per hardware exit, which is far more often than KVM_RUN returns on a guest whose exits KVM handles
 * itself, and on the machines measured each tracepoint firing per exit costs about 5 %.
 */
#ifndef __KT_HW_BPF_H
#define __KT_HW_BPF_H

#include "kt_helpers.bpf.h"
#include "kt_aggregate.bpf.h"

/* The state of the KVM_RUN this thread is in, or NULL (another ioctl, an untraced process, attached mid-call). */
static __always_inline struct enter_info *hw_run_state(void)
{
	struct enter_state *st = state_lookup();

	if (!st || !st->i.active || !(st->i.flags & KT_F_HW))
		return NULL;
	return &st->i;
}

/* The last hardware exit's time in KVM, up to `now`, into its (vCPU, reason) histogram. */
static __always_inline void hw_account(struct enter_info *in, __u64 now)
{
	struct kt_hw_key k = {}, zero = {};
	struct kt_agg_hist *h;

	k.vcpu.tgid = bpf_get_current_pid_tgid() >> 32;
	k.vcpu.vcpu_id = in->vcpu_id;
	k.vcpu.kvm = in->kvm;
	k.isa = in->hw_isa;
	k.reason = in->hw_reason;
	h = agg_entry(&agg_hw, &k, &zero, KT_STAT_HW_OVERFLOW);
	if (h)
		hist_add(h, now - in->hw_exit_ns);
	in->hw_exit_ns = 0;
}

/* KVM_RUN returns: the exit that sent it back to user space ends here. */
static __always_inline void hw_finish(struct enter_info *in, __u64 now)
{
	if (in->hw_exit_ns)
		hw_account(in, now);
}

SEC("tracepoint/kvm/kvm_entry")
int kt_kvm_entry(void *ctx)
{
	struct enter_info *in = hw_run_state();
	__u64 now;

	if (!in)
		return 0;
	now = bpf_ktime_get_ns();
	if (in->hw_exit_ns)
		hw_account(in, now);
	in->entry_ns = now;
	return 0;
}

SEC("tracepoint/kvm/kvm_exit")
int kt_kvm_exit(struct trace_event_raw_kvm_exit *ctx)
{
	struct enter_info *in = hw_run_state();
	__u64 now;

	if (!in)
		return 0;
	now = bpf_ktime_get_ns();
	if (in->entry_ns) {
		in->guest_ns += now - in->entry_ns;
		in->entry_ns = 0;
	}
	in->hw_exits += 1;
	in->hw_reason = ctx->exit_reason;
	in->hw_isa = ctx->isa;
	in->hw_exit_ns = now;
	return 0;
}

#endif /* __KT_HW_BPF_H */
