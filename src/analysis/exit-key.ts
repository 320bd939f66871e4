/**
 * The key VMM handling time is grouped by: what a KVM_RUN came back with, as precisely as the VMM's
 * dispatch would care.
 *
 *   IO    "IO out 0x3f8"       port and direction: a VMM dispatches port I/O by port.
 *   MMIO  "MMIO write 0xfee00000-0xfee00fff"
 *                              direction and the aligned MMIO_GRANULE-byte range holding phys_addr. The
 *                              granule is a page (4 KiB) by default: device regions are page-aligned and
 *                              page-granular on x86 (BARs, the LAPIC/IOAPIC pages, Firecracker's 4 KiB
 *                              virtio-mmio slots), so a page names one device while the registers inside it
 *                              (which a VMM handles in the same callback) stay together; per-address keys
 *                              would multiply the keys (and histograms) by the registers a driver touches.
 *   HLT and every other reason: the reason's name. A failed KVM_RUN with no exit reason: "error <ERRNO>".
 *
 * Works on records with exit details (full capture) and without (--lean: reason only, so "IO", "MMIO"); the
 * kernel aggregate builds the same strings from its own keys (ioExitKey / mmioExitKey / foldedExitKey).
 */
import type { IoctlRecord } from '../decode/records.js';

export const MMIO_GRANULE = 4096;

export interface ExitKey {
  key: string;
  reason: string;
  dir?: 'in' | 'out' | 'read' | 'write';
  port?: number;
  /** MMIO: first address of the range, "0x…". */
  addr?: string;
}

const hex = (v: bigint | number): string => `0x${v.toString(16)}`;

/** "IO out 0x3f8". */
export function ioExitKey(dir: 'in' | 'out', port: number): ExitKey {
  return { key: `IO ${dir} ${hex(port)}`, reason: 'IO', dir, port };
}

/** "MMIO write 0xd0000-0xd0fff": the `granule`-aligned range holding `addr`. */
export function mmioExitKey(dir: 'read' | 'write', addr: bigint, granule: number): ExitKey {
  const g = BigInt(granule);
  const lo = addr - (addr % g);
  return { key: `MMIO ${dir} ${hex(lo)}-${hex(lo + g - 1n)}`, reason: 'MMIO', dir, addr: hex(lo) };
}

/** "IO other": every key of a reason that did not get its own (too many keys per vCPU). */
export function foldedExitKey(reason: string): ExitKey {
  return { key: `${reason} other`, reason };
}

function ioKey(e: Record<string, unknown>): ExitKey {
  // The decoder writes "in"/"out"; kvm_run's raw byte (KVM_EXIT_IO_OUT = 1) is accepted too.
  const d = e.direction;
  const dir = d === 'out' || d === 1 ? 'out' : d === 'in' || d === 0 ? 'in' : undefined;
  const port = typeof e.port === 'number' ? e.port : undefined;
  if (dir === undefined || port === undefined) return { key: 'IO', reason: 'IO' };
  return ioExitKey(dir, port);
}

function mmioKey(e: Record<string, unknown>, granule: number): ExitKey {
  const w = e.is_write;
  const dir = w === true || w === 1 ? 'write' : w === false || w === 0 ? 'read' : undefined;
  let addr: bigint | undefined;
  try {
    if (typeof e.phys_addr === 'string' || typeof e.phys_addr === 'number') addr = BigInt(e.phys_addr);
  } catch {
    addr = undefined;
  }
  if (dir === undefined || addr === undefined) return { key: 'MMIO', reason: 'MMIO' };
  return mmioExitKey(dir, addr, granule);
}

/** The handling key of a KVM_RUN record's outcome. `granule`: a power of two (bytes) for MMIO ranges. */
export function exitKeyOf(r: Pick<IoctlRecord, 'exit' | 'ret' | 'errno'>, granule = MMIO_GRANULE): ExitKey {
  const e = r.exit;
  if (!e) {
    const why = exitReasonOf(r);
    return { key: why, reason: why };
  }
  if (e.reason === 'IO') return ioKey(e);
  if (e.reason === 'MMIO') return mmioKey(e, granule);
  return { key: e.reason, reason: e.reason };
}

/** The reason a KVM_RUN record is counted under in the exit table ("IO", "HLT", "error EFAULT", …). */
export function exitReasonOf(r: Pick<IoctlRecord, 'exit' | 'ret' | 'errno'>): string {
  if (r.exit) return r.exit.reason;
  return r.ret < 0 ? `error ${r.errno ?? r.ret}` : 'unknown';
}
