// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * kvm-trace BPF side: the KVM_RUN record, the hot path — the vCPU's kvm_run found through the fd, a short or
 * full snapshot of it reserved straight in the ring, and the PIO data of an IO exit.
 */
#ifndef __KT_RUN_BPF_H
#define __KT_RUN_BPF_H

#include "kt_helpers.bpf.h"
#include "kt_vcpu.bpf.h"

/* KVM_RUN exits whose details sit in the first KT_RUN_SNAP_SHORT bytes of kvm_run (header + the start of the
 * exit union: io, mmio, msr; none for HLT, INTR, SHUTDOWN, IRQ_WINDOW_OPEN). Their records
 * carry the short snapshot: smaller records are what makes the ring cheap here (measured: a 400-byte
 * record costs ~150 ns more to reserve than a 32-byte one on this machine kind). */
static __always_inline bool short_snapshot_exit(__u32 reason)
{
	switch (reason) {
	case 2:  /* KVM_EXIT_IO */
	case 5:  /* KVM_EXIT_HLT */
	case 6:  /* KVM_EXIT_MMIO */
	case 7:  /* KVM_EXIT_IRQ_WINDOW_OPEN */
	case 8:  /* KVM_EXIT_SHUTDOWN */
	case 10: /* KVM_EXIT_INTR */
	case 29: /* KVM_EXIT_X86_RDMSR */
	case 30: /* KVM_EXIT_X86_WRMSR */
		return true;
	}
	return false;
}

/* The whole io, mmio and msr members must fit the short snapshot (CO-RE: checked against this kernel's BTF;
 * the verifier drops the short path when they do not). */
#define KT_RUN_SHORT_FITS                                                                                   \
	(bpf_core_field_offset(struct kvm_run, io) + bpf_core_field_size(struct kvm_run, io) <=                \
		 KT_RUN_SNAP_SHORT &&                                                                          \
	 bpf_core_field_offset(struct kvm_run, mmio) + bpf_core_field_size(struct kvm_run, mmio) <=            \
		 KT_RUN_SNAP_SHORT &&                                                                          \
	 bpf_core_field_offset(struct kvm_run, msr) + bpf_core_field_size(struct kvm_run, msr) <=              \
		 KT_RUN_SNAP_SHORT)

/* KVM_RUN, the hot path: a fixed-size record reserved in the ring (one of three sizes: no vCPU found at
 * enter, short snapshot, full snapshot), kvm_run read straight into it, the PIO data offset then taken from
 * that copy (CO-RE offsets) rather than read again. */
static __always_inline void emit_run(struct enter_info *in, __u64 pid_tgid, long ret)
{
	__u64 run = in->run;
	struct kt_ioctl_event *e;
	struct kvm_run *snap;
	__u32 reason = 0, snap_len, rec_len;
	__u64 data_offset;
	const void *pio;

	if (run)
		reason = kt_load(struct kvm_run, run, exit_reason);
	if (!run) {
		rec_len = KT_IOCTL_FIXED;
		snap_len = 0;
		e = bpf_ringbuf_reserve(&events, KT_IOCTL_FIXED, 0);
	} else if (KT_RUN_SHORT_FITS && short_snapshot_exit(reason)) {
		rec_len = KT_IOCTL_FIXED + KT_RUN_SNAP_SHORT;
		snap_len = KT_RUN_SNAP_SHORT;
		e = bpf_ringbuf_reserve(&events, KT_IOCTL_FIXED + KT_RUN_SNAP_SHORT, 0);
	} else {
		rec_len = KT_IOCTL_FIXED + KT_RUN_SNAP;
		snap_len = KT_RUN_SNAP;
		e = bpf_ringbuf_reserve(&events, KT_IOCTL_FIXED + KT_RUN_SNAP, 0);
	}
	if (!e) {
		stat_inc(KT_STAT_LOST);
		return;
	}
	fill_ioctl(e, in, pid_tgid, ret);
	if (!run)
		goto out;
	e->run_kaddr = run;
	e->vcpu_id = in->vcpu_id;
	e->exit_reason = reason;
	if (in->flags & KT_F_HW) {
		e->hw_exits = in->hw_exits;
		e->guest_ns = in->guest_ns;
	}
	if (snap_len == KT_RUN_SNAP_SHORT) {
		if (bpf_probe_read_kernel(e->data, KT_RUN_SNAP_SHORT, (const void *)run))
			goto fault;
	} else if (snap_len == KT_RUN_SNAP) {
		if (bpf_probe_read_kernel(e->data, KT_RUN_SNAP, (const void *)run))
			goto fault;
	} else {
		goto out;
	}
	e->out_len = snap_len;
	e->hdr.flags |= KT_F_RUN;
	if (reason != KT_KVM_EXIT_IO)
		goto out;
	/* kvm_run's mmap is page 0 = vcpu->run, page 1 (KVM_PIO_PAGE_OFFSET) = vcpu->arch.pio_data: two
	 * separate kernel pages, so the PIO bytes are found through the page data_offset points into. */
	snap = (struct kvm_run *)e->data;
	data_offset = snap->io.data_offset;
	if (data_offset % KT_PAGE_SIZE > KT_PAGE_SIZE - sizeof(e->pio_data))
		goto out;
	if (data_offset / KT_PAGE_SIZE == 0)
		pio = (const void *)run + data_offset;
	else if (data_offset / KT_PAGE_SIZE == 1)
		pio = (const void *)kt_load(struct kvm_vcpu, in->vcpu, arch.pio_data) + (data_offset % KT_PAGE_SIZE);
	else
		goto out;
	bpf_probe_read_kernel(&e->pio_data, sizeof(e->pio_data), pio);
	goto out;
fault:
	e->hdr.flags |= KT_F_OUT_FAULT;
out:
	rb_submit(e, rec_len);
}

#endif /* __KT_RUN_BPF_H */
