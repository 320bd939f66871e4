// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * kvm-trace BPF side: small helpers every concern uses — the ioctl request encoding, counters, the cheap
 * filter, record headers, ring-buffer output with rare wakeups, the per-thread state, tracked fd kinds.
 */
#ifndef __KT_HELPERS_BPF_H
#define __KT_HELPERS_BPF_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include "kt_maps.bpf.h"

/* ioctl request encoding (asm-generic/ioctl.h, the uapi ABI; x86 uses the generic one). */
#define KT_IOC_TYPE(cmd) (((cmd) >> 8) & 0xff)
#define KT_IOC_SIZE(cmd) (((cmd) >> 16) & 0x3fff)
#define KT_IOC_DIR(cmd) ((cmd) >> 30)
#define KT_IOC_WRITE 1U /* user → kernel: the kernel copy_from_user()s the argument */
#define KT_IOC_READ 2U  /* kernel → user: the kernel copy_to_user()s the argument */
#define KT_IOC(dir, nr, size) (((dir) << 30) | ((size) << 16) | (KVMIO << 8) | (nr))

#define KVMIO 0xAE
#define KT_KVM_CREATE_VM KT_IOC(0U, 0x01, 0U)
#define KT_KVM_CREATE_VCPU KT_IOC(0U, 0x41, 0U)
#define KT_KVM_RUN KT_IOC(0U, 0x80, 0U)
#define KT_KVM_CREATE_DEVICE \
	KT_IOC(KT_IOC_READ | KT_IOC_WRITE, 0xe0, (__u32)sizeof(struct kvm_create_device))
#define KT_KVM_CREATE_DEVICE_TEST 1 /* uapi: kvm_create_device.flags, "only test, create nothing" */
#define KT_KVM_EXIT_IO 2            /* uapi: kvm_run.exit_reason */
#define KT_KVM_EXIT_MMIO 6
#define KT_KVM_EXIT_INTR 10

#define KT_PAGE_SIZE 4096

/* Bytes of an ioctl record before data[]. */
#define KT_IOCTL_FIXED ((__u32)__builtin_offsetof(struct kt_ioctl_event, data))

static __always_inline void stat_inc(__u32 idx)
{
	__u64 *v = bpf_map_lookup_elem(&stats, &idx);

	if (v)
		*v += 1;
}

/* Cheap filters only; anything fancier (regexes, thread names) is for user space. */
static __always_inline bool trace_allowed(__u32 tgid)
{
	if (filter_pid && tgid != filter_pid)
		return false;
	if (filter_pids && !bpf_map_lookup_elem(&pids, &tgid))
		return false;
	if (filter_comm) {
		/* The process name, not the thread's: QEMU's vCPU threads are called "CPU 0/KVM". */
		struct task_struct *task = (struct task_struct *)bpf_get_current_task();
		char comm[KT_TASK_COMM_LEN];

		BPF_CORE_READ_STR_INTO(&comm, task, group_leader, comm);
		for (int i = 0; i < KT_TASK_COMM_LEN; i++) {
			if (comm[i] != targ_comm[i])
				return false;
			if (comm[i] == 0)
				break;
		}
	}
	return true;
}

static __always_inline void fill_hdr(struct kt_hdr *h, __u16 type, __u64 pid_tgid)
{
	h->type = type;
	h->flags = 0;
	h->cpu = bpf_get_smp_processor_id();
	h->ts_ns = bpf_ktime_get_ns();
	h->pid = pid_tgid >> 32;
	h->tid = (__u32)pid_tgid;
}

/* Submit flags: no wakeup, unless this record (ring-buffer stride `stride`, already counted in
 * `avail_after` = unconsumed bytes) made the ring cross wakeup_bytes. Crossing, not "above", so a slow
 * consumer is not woken once per record (per-record wakeups cost 1.9x on this machine kind). */
static __always_inline __u64 wake_flags(__u64 avail_after, __u64 stride)
{
	if (wakeup_bytes && avail_after >= wakeup_bytes && avail_after - stride < wakeup_bytes)
		return BPF_RB_FORCE_WAKEUP;
	return BPF_RB_NO_WAKEUP;
}

static __always_inline __u64 rb_stride(__u64 len)
{
	return (len + 8 + 7) & ~7ULL; /* BPF_RINGBUF_HDR_SZ + payload, 8-aligned */
}

static __always_inline int rb_output(void *rec, __u64 len)
{
	__u64 before = bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA);
	__u64 stride = rb_stride(len);

	if (bpf_ringbuf_output(&events, rec, len, wake_flags(before + stride, stride))) {
		stat_inc(KT_STAT_LOST);
		return -1;
	}
	stat_inc(KT_STAT_EVENTS);
	return 0;
}

static __always_inline void rb_submit(void *rec, __u64 len)
{
	__u64 avail = bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA);

	bpf_ringbuf_submit(rec, wake_flags(avail, rb_stride(len)));
	stat_inc(KT_STAT_EVENTS);
}

static __always_inline struct enter_state *state_lookup(void)
{
	return bpf_task_storage_get(&state, bpf_get_current_task_btf(), 0, 0);
}

static __always_inline struct enter_state *state_create(void)
{
	return bpf_task_storage_get(&state, bpf_get_current_task_btf(), 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
}

static __always_inline __u32 tracked_kind(__u32 tgid, __s32 fd)
{
	struct fd_key key = { .tgid = tgid, .fd = fd };
	__u32 *kind = bpf_map_lookup_elem(&fds, &key);

	return kind ? *kind : KT_FD_UNKNOWN;
}

static __always_inline void track_fd(__u32 tgid, __s32 fd, __u32 kind)
{
	struct fd_key key = { .tgid = tgid, .fd = fd };
	__u32 one = 1;

	bpf_map_update_elem(&fds, &key, &kind, BPF_ANY);
	bpf_map_update_elem(&procs, &tgid, &one, BPF_ANY);
}

/* The fixed part of an ioctl record from the thread's enter state; the rest (KVM_RUN's vCPU fields, data
 * lengths) is filled by the caller. */
static __always_inline void fill_ioctl(struct kt_ioctl_event *e, struct enter_info *in, __u64 pid_tgid,
				       long ret)
{
	fill_hdr(&e->hdr, KT_EV_IOCTL, pid_tgid);
	e->hdr.flags = in->flags;
	e->enter_ns = in->enter_ns;
	e->arg = in->arg;
	e->ret = ret;
	e->fd = in->fd;
	e->cmd = in->cmd;
	e->run_kaddr = 0;
	e->vcpu_id = -1;
	e->exit_reason = 0;
	e->pio_data = 0;
	e->in_len = 0;
	e->out_len = 0;
	e->fd_kind = in->fd_kind;
	e->hw_exits = 0;
	e->__pad1 = 0;
	e->guest_ns = 0;
	__builtin_memcpy(e->comm, bpf_get_current_task_btf()->comm, sizeof(e->comm));
}

#endif /* __KT_HELPERS_BPF_H */
