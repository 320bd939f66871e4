// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * kvm-trace BPF side: from an fd of the current process to its struct file and, for a vCPU fd, to the
 * struct kvm_vcpu and its kvm_run — resolved at sys_enter and kept in the thread's state.
 *
 * Kernel pointers are held as plain numbers and read with kt_load(): one load through bpf_rdonly_cast()
 * where the kernel has it (have_rdonly_cast), else one bpf_probe_read_kernel(); CO-RE offsets either way.
 * bpf_rdonly_cast takes vmlinux type ids only, so user space also turns it off when struct kvm_vcpu or
 * kvm_run live only in kvm.ko's BTF; the CO-RE reads relocate against module BTF as well.
 */
#ifndef __KT_VCPU_BPF_H
#define __KT_VCPU_BPF_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include "kt_helpers.bpf.h"

#define kt_cast(type, ptr) ((type *)bpf_rdonly_cast((void *)(ptr), bpf_core_type_id_kernel(type)))

/* `((type *)ptr)->field` for a kernel address `ptr` held as a number (one level, no pointer chasing). `ptr`
 * is evaluated first: inside BPF_CORE_READ an expression like in->vcpu would get a CO-RE relocation of
 * its own, against a type the kernel does not have. */
#define kt_load(type, ptr, field)                                                                           \
	({                                                                                                  \
		__u64 __kt_p = (__u64)(ptr);                                                                \
		have_rdonly_cast ? kt_cast(type, __kt_p)->field : BPF_CORE_READ((type *)__kt_p, field);     \
	})

/* The struct file behind fd in the current process (its kernel address), or 0. task->files->fdt is a
 * trusted BTF walk; fdt->fd[fd] needs a helper: the verifier treats a pointer-to-pointer member as a number. */
static __always_inline __u64 file_of_fd(__s32 fd)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct fdtable *fdt = task->files->fdt;
	__u64 file = 0;

	if (fd < 0 || (__u32)fd >= fdt->max_fds)
		return 0;
	if (bpf_probe_read_kernel(&file, sizeof(file), &fdt->fd[fd]))
		return 0;
	return file;
}

/* file->f_op->unlocked_ioctl: tells a KVM file from any other. */
static __always_inline const void *ioctl_handler(__u64 file)
{
	const struct file_operations *fop;

	if (!file)
		return NULL;
	fop = kt_load(struct file, file, f_op);
	if (!fop)
		return NULL;
	return (const void *)kt_load(struct file_operations, fop, unlocked_ioctl);
}

/* KVM_RUN: the vCPU behind in->fd into the state (vcpu, run, vcpu_id, fd_kind), after checking that the file
 * really is a vCPU (its ioctl handler, or our tracking when the kernel hides kvm_vcpu_ioctl). */
static __always_inline void resolve_vcpu(struct enter_info *in, __u32 tgid)
{
	__u64 file = file_of_fd(in->fd), vcpu;

	if (!file)
		return;
	if (&kvm_vcpu_ioctl) {
		if (ioctl_handler(file) != &kvm_vcpu_ioctl)
			return;
	} else if (tracked_kind(tgid, in->fd) != KT_FD_VCPU) {
		return;
	}
	vcpu = (__u64)kt_load(struct file, file, private_data);
	if (!vcpu)
		return;
	in->fd_kind = KT_FD_VCPU;
	in->vcpu = vcpu;
	in->run = (__u64)kt_load(struct kvm_vcpu, vcpu, run);
	in->vcpu_id = kt_load(struct kvm_vcpu, vcpu, vcpu_id);
	/* The VM: only the per-vCPU counters (aggregate mode, hardware exits) are keyed by it. */
	if (aggregate_only || hw_hooks)
		in->kvm = (__u64)kt_load(struct kvm_vcpu, vcpu, kvm);
}

/* Everything about in->fd a record needs, at enter (or at exit for a call seen without its enter). */
static __always_inline void resolve_fd(struct enter_info *in, __u32 tgid)
{
	in->fd_kind = KT_FD_UNKNOWN;
	in->vcpu = 0;
	in->run = 0;
	in->kvm = 0;
	in->vcpu_id = -1;
	if (in->cmd == KT_KVM_RUN)
		resolve_vcpu(in, tgid);
	else if (!aggregate_only)
		in->fd_kind = tracked_kind(tgid, in->fd);
}

#endif /* __KT_VCPU_BPF_H */
