// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * kvm-trace BPF side, aggregate-only mode (rodata aggregate_only): a returned KVM ioctl goes into per-CPU
 * counters (count, errors, log-linear latency histogram per request; exit reasons per vCPU) instead of a
 * record. User space sums them at the end (src/bpf/aggregate.ts mirrors the bucket rule).
 */
#ifndef __KT_AGGREGATE_BPF_H
#define __KT_AGGREGATE_BPF_H

#include "kt_helpers.bpf.h"
#include "kt_vcpu.bpf.h"

/* floor(log2(v)) for v > 0, without loops. */
static __always_inline __u32 log2_u64(__u64 v)
{
	__u32 r = 0, shift;

	shift = (v > 0xffffffffULL) << 5;
	v >>= shift;
	r |= shift;
	shift = (v > 0xffff) << 4;
	v >>= shift;
	r |= shift;
	shift = (v > 0xff) << 3;
	v >>= shift;
	r |= shift;
	shift = (v > 0xf) << 2;
	v >>= shift;
	r |= shift;
	shift = (v > 0x3) << 1;
	v >>= shift;
	r |= shift;
	return r | (__u32)(v >> 1);
}

/* Histogram bucket of a latency (see KT_AGG_BUCKETS in kvm_trace.h). */
static __always_inline __u32 lat_bucket(__u64 ns)
{
	__u32 e, b;

	if (ns < 4)
		return ns;
	e = log2_u64(ns);
	b = (e - 1) * 4 + ((ns >> (e - 2)) & 3);
	if (b >= KT_AGG_BUCKETS)
		b = KT_AGG_BUCKETS - 1;
	/* The verifier must see the bound on the register used for the index: clang would otherwise index with
	 * the pre-clamp copy. The mask changes nothing (KT_AGG_BUCKETS is a power of two, b is below it). */
	barrier_var(b);
	return b & (KT_AGG_BUCKETS - 1);
}

/* The counters of a non-KVM_RUN request: found, else inserted zeroed (another CPU may win the insert: look
 * it up again either way), else the overflow entry 0 when the hash is full. */
static __always_inline struct kt_agg_ioctl *agg_counters(__u32 cmd)
{
	struct kt_agg_ioctl *a = bpf_map_lookup_elem(&agg_ioctls, &cmd);
	__u32 zero = 0;
	void *init;

	if (a)
		return a;
	init = bpf_map_lookup_elem(&agg_zero, &zero);
	if (!init)
		return NULL;
	bpf_map_update_elem(&agg_ioctls, &cmd, init, BPF_NOEXIST);
	a = bpf_map_lookup_elem(&agg_ioctls, &cmd);
	return a ? a : bpf_map_lookup_elem(&agg_ioctls, &zero);
}

/* KVM_RUN's exit reason per vCPU: the vCPU found at enter, then one load. A failed KVM_RUN leaves exit_reason
 * stale, except -EINTR, for which KVM sets KVM_EXIT_INTR (as the decoder counts). */
static __always_inline void agg_exit_reason(struct enter_info *in, long ret)
{
	struct kt_agg_exits *x;
	__u32 slot, reason;
	int id;

	if (!in->run)
		return;
	id = in->vcpu_id;
	slot = id < 0 || id >= KT_AGG_VCPUS ? KT_AGG_VCPUS - 1 : id;
	x = bpf_map_lookup_elem(&agg_exits, &slot);
	if (!x)
		return;
	reason = kt_load(struct kvm_run, in->run, exit_reason);
	if (ret < 0 && reason != KT_KVM_EXIT_INTR)
		return;
	if (reason >= KT_AGG_REASONS)
		reason = KT_AGG_REASONS - 1;
	barrier_var(reason); /* as in lat_bucket: the bound must hold on the indexing register */
	reason &= KT_AGG_REASONS - 1;
	x->reasons[reason] += 1;
}

/* One returned KVM ioctl into the counters (instead of a record). */
static __always_inline void agg_ioctl(struct enter_info *in, __u64 pid_tgid, long ret)
{
	struct kt_agg_ioctl *a;
	__u32 zero = 0;
	__u64 lat;

	if (in->cmd == KT_KVM_RUN) {
		a = bpf_map_lookup_elem(&agg_run, &zero);
		agg_exit_reason(in, ret);
	} else {
		a = agg_counters(in->cmd);
		/* Learn vCPU fds: their mmap and close still become fd records. */
		if (ret >= 0 && in->cmd == KT_KVM_CREATE_VCPU)
			track_fd(pid_tgid >> 32, ret, KT_FD_VCPU);
	}
	if (!a)
		return;
	a->count += 1;
	if (ret < 0)
		a->errors += 1;
	if (in->flags & KT_F_NO_ENTER) {
		a->no_enter += 1;
		return;
	}
	lat = bpf_ktime_get_ns() - in->enter_ns;
	a->sum_ns += lat;
	if (lat > a->max_ns)
		a->max_ns = lat;
	a->hist[lat_bucket(lat)] += 1;
}

#endif /* __KT_AGGREGATE_BPF_H */
