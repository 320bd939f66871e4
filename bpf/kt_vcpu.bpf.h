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

/* Which files are KVM's, from the file alone (also for fds opened before we attached), without kernel
 * symbols: comparing file->f_op with &kvm_vcpu_fops would need an untyped __ksym, and libbpf reads all of
 * /proc/kallsyms to resolve one.
 *
 * A vCPU file is an anonymous inode whose dentry is named "kvm-vcpu:<id>" (virt/kvm/kvm_main.c,
 * create_vcpu_fd; the stats file of KVM_GET_STATS_FD is "kvm-vcpu-stats:<id>", hence the ':'). The inode's
 * file system is checked first: a file of that name on a disk is not a vCPU, and its private_data must not be
 * read as one. */
#define KT_VCPU_NAME_HEAD 0x757063762d6d766bULL /* "kvm-vcpu", little-endian */
#define KT_ANON_INODE_FS_MAGIC 0x09041934 /* include/uapi/linux/magic.h */

static __always_inline bool is_vcpu_file(__u64 file)
{
	struct { __u64 head; char sep; } name = {};
	__u64 dentry, str, inode, sb;

	if (!file)
		return false;
	inode = (__u64)kt_load(struct file, file, f_inode);
	sb = inode ? (__u64)kt_load(struct inode, inode, i_sb) : 0;
	if (!sb || kt_load(struct super_block, sb, s_magic) != KT_ANON_INODE_FS_MAGIC)
		return false;
	dentry = (__u64)kt_load(struct file, file, f_path.dentry);
	if (!dentry || kt_load(struct dentry, dentry, d_name.len) < 8)
		return false;
	str = (__u64)kt_load(struct dentry, dentry, d_name.name);
	/* 9 bytes: the name's NUL is read when it is exactly "kvm-vcpu" (kernels before the id was added). */
	if (!str || bpf_probe_read_kernel(&name, 9, (const void *)str))
		return false;
	return name.head == KT_VCPU_NAME_HEAD && (name.sep == ':' || name.sep == 0);
}

/* /dev/kvm is the misc character device 10:232 (KVM_MINOR in include/linux/miscdevice.h, registered in
 * Documentation/admin-guide/devices.txt) under any path or name; i_rdev holds it as the kernel's dev_t. */
#define KT_S_IFMT 0170000
#define KT_S_IFCHR 0020000
#define KT_MINORBITS 20
#define KT_KVM_DEV ((10U << KT_MINORBITS) | 232U)

static __always_inline bool is_kvm_dev_file(__u64 file)
{
	__u64 inode;

	if (!file)
		return false;
	inode = (__u64)kt_load(struct file, file, f_inode);
	if (!inode)
		return false;
	return (kt_load(struct inode, inode, i_mode) & KT_S_IFMT) == KT_S_IFCHR &&
	       kt_load(struct inode, inode, i_rdev) == KT_KVM_DEV;
}

/* KVM_RUN: the vCPU behind in->fd into the state (vcpu, run, vcpu_id, fd_kind), after checking that the file
 * really is a vCPU. */
static __always_inline void resolve_vcpu(struct enter_info *in)
{
	__u64 file = file_of_fd(in->fd), vcpu;

	if (!is_vcpu_file(file))
		return;
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
		resolve_vcpu(in);
	else if (!aggregate_only)
		in->fd_kind = tracked_kind(tgid, in->fd);
}

#endif /* __KT_VCPU_BPF_H */
