/**
 * The kernel side's own counters (the per-CPU "stats" array, enum kt_stat of bpf/kvm_trace.h), summed over
 * CPUs: what was lost, dropped, folded or counted in an overflow entry — reported, never silent.
 */
import { type BpfMapPtr, mapLookup } from '../ffi/libbpf.js';
import * as L from './event-layout.js';

export interface TracerStats {
  /** Records dropped because the ring was full. */
  lost: number;
  /** Records submitted to the ring. */
  events: number;
  /** ioctl exits seen without their enter (attached mid-call); still recorded, flagged KT_F_NO_ENTER. */
  noEnter: number;
  /** KVM ioctls whose per-thread state could not be had (task storage not allocatable, or its lock busy): not recorded. */
  stateUnavailable: number;
  /** Aggregate mode: handling times kept under their reason alone / in the overflow entry (hash full). */
  handlingFolded: number;
  handlingOverflow: number;
  /** Aggregate mode: re-entries not timed (their enter was not seen). */
  handlingUntimed: number;
  /** KVM_RUNs, hardware exits, (process, request) calls counted in an overflow entry (hash full). */
  vcpuOverflow: number;
  hwOverflow: number;
  ioctlOverflow: number;
}

/** Sum every counter of the stats map over `ncpu` CPUs. */
export function readStats(stats: BpfMapPtr, ncpu: number): TracerStats {
  const key = Buffer.alloc(4);
  const value = Buffer.alloc(8 * ncpu);
  const v = new Array<number>(L.KT_STAT_MAX).fill(0);
  for (let slot = 0; slot < L.KT_STAT_MAX; slot++) {
    key.writeUInt32LE(slot);
    if (!mapLookup(stats, key, value)) continue;
    let sum = 0n;
    for (let cpu = 0; cpu < ncpu; cpu++) sum += value.readBigUInt64LE(cpu * 8);
    v[slot] = Number(sum);
  }
  return {
    lost: v[L.KT_STAT_LOST],
    events: v[L.KT_STAT_EVENTS],
    noEnter: v[L.KT_STAT_NO_ENTER],
    stateUnavailable: v[L.KT_STAT_STATE_UNAVAILABLE],
    handlingFolded: v[L.KT_STAT_HANDLING_FOLDED],
    handlingOverflow: v[L.KT_STAT_HANDLING_OVERFLOW],
    handlingUntimed: v[L.KT_STAT_HANDLING_UNTIMED],
    vcpuOverflow: v[L.KT_STAT_VCPU_OVERFLOW],
    hwOverflow: v[L.KT_STAT_HW_OVERFLOW],
    ioctlOverflow: v[L.KT_STAT_IOCTL_OVERFLOW],
  };
}
