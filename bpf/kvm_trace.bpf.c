// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * kvm-trace: BPF programs that capture every KVM ioctl (ioctl type 0xAE) of the traced processes.
 *
 * One record per ioctl, emitted at syscall exit with everything about the call folded in (arguments read
 * at enter and exit, return value, latency, and for KVM_RUN the vCPU's kvm_run kernel address, vcpu_id,
 * exit reason and a kvm_run snapshot) — or, in aggregate-only mode, no record but per-CPU counters
 * (count, errors, latency histogram per process and request; per process / VM / vCPU the KVM_RUN latency,
 * exit reasons and the VMM's handling time per exit) read by user space whenever it likes.
 * Where the kernel emits kvm:kvm_entry / kvm:kvm_exit (kvm-intel, kvm-amd), an optional hook set counts the
 * hardware exits each KVM_RUN absorbed, its time in the guest, and each exit's time in KVM.
 * Around it: the fd lifecycle (/dev/kvm opened, VM/vCPU/device fds created, mmapped, closed, process exit)
 * and, where the kernel allows kprobes or fentry, the user copies done inside a KVM ioctl.
 *
 * Arguments that end in a flexible array (kvm_msrs, kvm_cpuid2, kvm_msr_list, ...) are read with their
 * entries, up to KT_DATA_MAX: the flex_arrays map, filled by user space from BTF, says where the count is.
 *
 * Read-only: only bpf_probe_read_{user,kernel} and loads; nothing writes user or kernel memory.
 * Layouts of kernel structs come from BTF through CO-RE relocations, never from hard-coded offsets.
 *
 * Cost rules (measured on the target machine kind, nested virtualisation): every program that fires
 * system-wide bails out first thing; one ring-buffer record per KVM ioctl; records are submitted with BPF_RB_NO_WAKEUP and the
 * consumer is woken only when the ring crosses a fill threshold (it drains on a timer otherwise).
 *
 * Programs (user side toggles autoload and attaches each on its own, src/bpf/):
 *   always:      kt_ioctl_enter, kt_ioctl_exit, kt_openat_exit, kt_open_exit, kt_mmap_exit, kt_close_exit,
 *                kt_process_exit (tracepoints), and the rest of the fd lifecycle in kt_fd_track.bpf.h:
 *                kt_dup{,2,3}_exit, kt_fcntl_exit, kt_close_range_exit, kt_execve{,at}_exit, kt_openat2_exit
 *                (tracepoints), kt_process_fork (tp_btf)
 *   copy hooks:  kt_{copy_from_user,copy_to_user,memdup_user,vmemdup_user}_{kprobe,fentry}, per hook the
 *                sibling the kernel lets attach (kprobe and fentry strategies; none in aggregate-only mode)
 *   hw exits:    kt_kvm_entry, kt_kvm_exit (tracepoints kvm:kvm_entry / kvm:kvm_exit; rodata hw_hooks)
 *
 * The programs and their handlers live in one header per concern, the way libbpf-tools share helpers;
 * this file includes each once (one object, one BTF):
 *   kt_maps.bpf.h       rodata filters, maps, per-thread state, kernel symbols
 *   kt_helpers.bpf.h    ioctl encoding, counters, filter, record headers, ring output, tracked fd kinds
 *   kt_vcpu.bpf.h       fd → struct file → vCPU / kvm_run (bpf_rdonly_cast where the kernel has it, else CO-RE reads)
 *   kt_ioctl.bpf.h      kt_ioctl_enter / kt_ioctl_exit: arguments, flexible arrays, one record per call
 *   kt_run.bpf.h        the KVM_RUN record: kvm_run snapshot, PIO data
 *   kt_aggregate.bpf.h  aggregate-only counters, VMM handling time, the duration histograms
 *   kt_hw.bpf.h         kt_kvm_entry / kt_kvm_exit: hardware exits inside a KVM_RUN
 *   kt_fd.bpf.h         kt_open(at)_exit, kt_mmap_exit, kt_close_exit, kt_process_exit: the fd lifecycle
 *   kt_fd_track.bpf.h   dup family, close_range, execve, openat2, fork: the fd table kept exact
 *   kt_copy.bpf.h       kt_*_kprobe / kt_*_fentry: copy observers
 * kvm_trace.h is the event layout shared with user space, and nothing else.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include "kvm_trace.h"
#include "kt_maps.bpf.h"
#include "kt_helpers.bpf.h"
#include "kt_vcpu.bpf.h"
#include "kt_ioctl.bpf.h"
#include "kt_hw.bpf.h"
#include "kt_fd.bpf.h"
#include "kt_fd_track.bpf.h"
#include "kt_copy.bpf.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Every record type in the object's BTF: test/event-layout.test.ts compares the decoder against it. */
const struct kt_hdr *unused_kt_hdr __attribute__((unused));
const struct kt_ioctl_event *unused_kt_ioctl_event __attribute__((unused));
const struct kt_fd_event *unused_kt_fd_event __attribute__((unused));
const struct kt_mmap_event *unused_kt_mmap_event __attribute__((unused));
const struct kt_exit_event *unused_kt_exit_event __attribute__((unused));
const struct kt_copy_event *unused_kt_copy_event __attribute__((unused));
const enum kt_event_type *unused_kt_event_type __attribute__((unused));
const enum kt_flags *unused_kt_flags __attribute__((unused));
const enum kt_fd_kind *unused_kt_fd_kind __attribute__((unused));
const enum kt_fd_op *unused_kt_fd_op __attribute__((unused));
const enum kt_copy_dir *unused_kt_copy_dir __attribute__((unused));
const enum kt_copy_hook *unused_kt_copy_hook __attribute__((unused));
const enum kt_stat *unused_kt_stat __attribute__((unused));
const enum kt_flex_when *unused_kt_flex_when __attribute__((unused));
const struct kt_agg_ioctl *unused_kt_agg_ioctl __attribute__((unused));
const struct kt_agg_ioctl_key *unused_kt_agg_ioctl_key __attribute__((unused));
const struct kt_agg_vcpu_key *unused_kt_agg_vcpu_key __attribute__((unused));
const struct kt_agg_vcpu *unused_kt_agg_vcpu __attribute__((unused));
const enum kt_exit_key_kind *unused_kt_exit_key_kind __attribute__((unused));
const struct kt_exit_key *unused_kt_exit_key __attribute__((unused));
const struct kt_handling_key *unused_kt_handling_key __attribute__((unused));
const struct kt_hw_key *unused_kt_hw_key __attribute__((unused));
const struct kt_agg_hist *unused_kt_agg_hist __attribute__((unused));
const struct kt_agg_vm *unused_kt_agg_vm __attribute__((unused));
