// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * kvm-trace BPF side, aggregate-only mode (rodata aggregate_only): a returned KVM ioctl goes into per-CPU
 * counters instead of a record — count, errors and a log-linear latency histogram per process and request;
 * for KVM_RUN per process / VM / vCPU, with its exit reasons — and the VMM's handling time (a KVM_RUN's
 * return → the next KVM_RUN on that vCPU fd) into a histogram per vCPU and exit key. User space sums the
 * CPUs whenever it reads (src/bpf/aggregate.ts mirrors the bucket rule). The duration histograms of the
 * hardware-exit hooks (kt_hw.bpf.h) are filled here too.
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

/* The entry of `key` in the per-CPU hash `map`: found, else inserted zeroed (another CPU may win the insert:
 * look it up again either way), else — the hash is full — the overflow entry (`overflow`, the all-zero key
 * user space inserted), and `stat` counts it. */
static __always_inline void *agg_entry(void *map, const void *key, const void *overflow, __u32 stat)
{
	void *v = bpf_map_lookup_elem(map, key);
	__u32 zero = 0;
	void *init;

	if (v)
		return v;
	init = bpf_map_lookup_elem(&agg_zero, &zero);
	if (!init)
		return NULL;
	bpf_map_update_elem(map, key, init, BPF_NOEXIST);
	v = bpf_map_lookup_elem(map, key);
	if (v)
		return v;
	if (overflow) {
		stat_inc(stat);
		return bpf_map_lookup_elem(map, overflow);
	}
	return NULL;
}

/* One duration into a histogram. */
static __always_inline void hist_add(struct kt_agg_hist *h, __u64 ns)
{
	if (!h->count || ns < h->min_ns)
		h->min_ns = ns;
	if (ns > h->max_ns)
		h->max_ns = ns;
	h->count += 1;
	h->sum_ns += ns;
	h->hist[lat_bucket(ns)] += 1;
}

/* One returned call into a request's (or a vCPU's KVM_RUN) counters; returns its latency (0 without enter). */
static __always_inline __u64 agg_count(struct kt_agg_ioctl *a, struct enter_info *in, long ret, __u64 now)
{
	__u64 lat;

	a->count += 1;
	if (ret < 0)
		a->errors += 1;
	if (in->flags & KT_F_NO_ENTER) {
		a->no_enter += 1;
		return 0;
	}
	lat = now - in->enter_ns;
	a->sum_ns += lat;
	if (lat > a->max_ns)
		a->max_ns = lat;
	a->hist[lat_bucket(lat)] += 1;
	return lat;
}

/* What the KVM_RUN came back with (struct kt_exit_key): `valid` is false for a failed call that left no exit
 * reason (KVM sets one on -EINTR only: KVM_EXIT_INTR), keyed by its errno as the decoder names it. */
static __always_inline void exit_key_of(struct kt_exit_key *x, struct enter_info *in, __u32 reason, bool valid, long ret)
{
	x->port = 0;
	x->dir = 0;
	x->addr = 0;
	if (!valid) {
		x->kind = KT_XK_ERROR;
		x->reason = -ret;
		return;
	}
	x->reason = reason;
	x->kind = KT_XK_REASON;
	if (reason == KT_KVM_EXIT_IO) {
		x->kind = KT_XK_IO;
		x->dir = kt_load(struct kvm_run, in->run, io.direction);
		x->port = kt_load(struct kvm_run, in->run, io.port);
	} else if (reason == KT_KVM_EXIT_MMIO) {
		x->kind = KT_XK_MMIO;
		x->dir = kt_load(struct kvm_run, in->run, mmio.is_write);
		x->addr = kt_load(struct kvm_run, in->run, mmio.phys_addr) >> mmio_granule_shift << mmio_granule_shift;
	}
}

/* A return still waiting in the thread's state, for a vCPU this thread is not about to run again: into the
 * pending hash (keyed by the vCPU fd), where the next KVM_RUN on that fd looks. Its fd is tracked so a close
 * (or the process's exit) deletes the entry. */
static __always_inline void agg_spill(struct kt_pending *pend, __u32 tgid)
{
	struct fd_key fk = { .tgid = tgid, .fd = pend->fd };

	bpf_map_update_elem(&pending, &fk, pend, BPF_ANY);
	track_fd(tgid, pend->fd, KT_FD_VCPU);
	pend->exit_ns = 0;
}

/* KVM_RUN returned: remember when and with what, in the thread's state, for the next KVM_RUN on the vCPU. */
static __always_inline void agg_pend(struct enter_state *st, __u32 tgid, struct kt_agg_vcpu_key *vk, struct kt_exit_key *x,
				     __u64 now)
{
	struct kt_pending *p = &st->pend;

	if (p->exit_ns) {
		/* The vCPU, not the fd: a dup'd vCPU fd is the same vCPU. */
		if (p->vcpu != st->i.vcpu)
			agg_spill(p, tgid); /* another vCPU's return: keep it for that vCPU */
		else
			stat_inc(KT_STAT_HANDLING_UNTIMED); /* the re-entry in between was not seen */
	}
	p->exit_ns = now;
	p->vcpu = st->i.vcpu;
	p->fd = st->i.fd;
	p->key.vcpu = *vk;
	p->key.exit = *x;
}

/* One handling time into its (vCPU, exit key) histogram; when the hash is full, into the reason-only key of
 * the vCPU ("IO other"), and failing that into the overflow entry. */
static __always_inline void handling_add(struct kt_handling_key *key, __u64 ns)
{
	struct kt_handling_key folded = {}, zero = {};
	struct kt_agg_hist *h = agg_entry(&agg_handling, key, NULL, 0);

	if (!h) {
		folded.vcpu = key->vcpu;
		folded.exit.reason = key->exit.reason;
		folded.exit.kind = KT_XK_FOLDED;
		stat_inc(KT_STAT_HANDLING_FOLDED);
		h = agg_entry(&agg_handling, &folded, &zero, KT_STAT_HANDLING_OVERFLOW);
	}
	if (h)
		hist_add(h, ns);
}

/* Was this thread the last to run the vCPU? KVM notes the thread behind each KVM_RUN in vcpu->pid (updated
 * inside the ioctl, so at sys_enter it still names the previous run's thread). A return kept by a thread
 * that did not run the vCPU since is not this re-entry's: another thread ran it in between. */
static __always_inline bool last_ran_it(struct enter_info *in)
{
	return (__u64)kt_load(struct kvm_vcpu, in->vcpu, pid) == (__u64)bpf_get_current_task_btf()->thread_pid;
}

/* KVM_RUN enters (aggregate mode): the VMM handling time since this vCPU's last return — from the thread's
 * state (the common case: no map operation), else from the pending hash (the thread ran another vCPU in
 * between). A re-entry by another thread than the one that returned is counted, not timed. */
static __always_inline void agg_reenter(struct enter_state *st, __u32 tgid)
{
	struct enter_info *in = &st->i;
	struct fd_key fk = { .tgid = tgid, .fd = in->fd };
	struct kt_pending *p = &st->pend;
	__u64 exit_ns;

	if (!in->vcpu)
		return;
	if (!p->exit_ns || p->vcpu != in->vcpu) {
		p = bpf_map_lookup_elem(&pending, &fk);
		if (!p || !p->exit_ns)
			return;
	}
	exit_ns = p->exit_ns;
	p->exit_ns = 0;
	if (p->vcpu != in->vcpu || in->enter_ns < exit_ns)
		return;
	if (!last_ran_it(in)) {
		stat_inc(KT_STAT_HANDLING_UNTIMED);
		return;
	}
	handling_add(&p->key, in->enter_ns - exit_ns);
}

/* KVM_RUN returned (aggregate mode): its vCPU's counters, exit reason, hardware-exit totals, and the return
 * waiting for the next entry. A failed KVM_RUN leaves exit_reason stale, except -EINTR, for which KVM sets
 * KVM_EXIT_INTR (as the decoder counts). */
static __always_inline void agg_run(struct enter_state *st, __u32 tgid, long ret, __u64 now)
{
	struct enter_info *in = &st->i;
	struct kt_agg_vcpu_key vk = { .tgid = tgid, .vcpu_id = in->vcpu_id, .kvm = in->kvm }, zero = {};
	struct kt_agg_vcpu *v = agg_entry(&agg_vcpus, &vk, &zero, KT_STAT_VCPU_OVERFLOW);
	struct kt_exit_key x;
	__u32 reason = 0, slot;
	bool valid = false;
	__u64 lat;

	if (!v)
		return;
	lat = agg_count(&v->run, in, ret, now);
	if (in->run) {
		reason = kt_load(struct kvm_run, in->run, exit_reason);
		valid = ret >= 0 || reason == KT_KVM_EXIT_INTR;
	}
	if (valid) {
		slot = reason >= KT_AGG_REASONS ? KT_AGG_REASONS - 1 : reason;
		barrier_var(slot); /* as in lat_bucket: the bound must hold on the indexing register */
		slot &= KT_AGG_REASONS - 1;
		v->reasons[slot] += 1;
	}
	if (in->flags & KT_F_HW) {
		v->hw_runs += 1;
		v->hw_exits += in->hw_exits;
		if (in->hw_exits > v->hw_max_exits)
			v->hw_max_exits = in->hw_exits;
		v->guest_ns += in->guest_ns;
		v->hw_run_ns += lat;
	}
	if (!in->vcpu)
		return;
	exit_key_of(&x, in, reason, valid, ret);
	agg_pend(st, tgid, &vk, &x, now);
}

/* A VM was created (KVM_CREATE_VM returned `fd`): its struct kvm * → creator and time, for the VM index. */
static __always_inline void agg_vm_created(__u32 tgid, long fd, __u64 now)
{
	__u64 file = file_of_fd(fd), kvm;
	struct kt_agg_vm vm = { .tgid = tgid, .fd = fd, .created_ns = now };

	if (!file)
		return;
	kvm = (__u64)kt_load(struct file, file, private_data);
	if (kvm)
		bpf_map_update_elem(&agg_vms, &kvm, &vm, BPF_ANY);
}

/* One returned KVM ioctl into the counters (instead of a record). */
static __always_inline void agg_ioctl(struct enter_state *st, __u64 pid_tgid, long ret)
{
	struct enter_info *in = &st->i;
	struct kt_agg_ioctl_key k = { .tgid = pid_tgid >> 32, .cmd = in->cmd }, zero = {};
	__u64 now = bpf_ktime_get_ns();
	struct kt_agg_ioctl *a;

	if (in->cmd == KT_KVM_RUN) {
		agg_run(st, k.tgid, ret, now);
		return;
	}
	a = agg_entry(&agg_ioctls, &k, &zero, KT_STAT_IOCTL_OVERFLOW);
	if (a)
		agg_count(a, in, ret, now);
	if (ret < 0)
		return;
	/* Learn vCPU fds: their mmap and close still become fd records. */
	if (in->cmd == KT_KVM_CREATE_VCPU)
		track_fd(k.tgid, ret, KT_FD_VCPU);
	else if (in->cmd == KT_KVM_CREATE_VM)
		agg_vm_created(k.tgid, ret, now);
}

#endif /* __KT_AGGREGATE_BPF_H */
