/**
 * The human summary `attach` prints on stop: per-ioctl counts and latency, exit reasons per vCPU, the
 * KVM_RUN table per exit reason (full capture), hardware exits (--hw-exits), the VMM handling time (both
 * modes), where each vCPU's kvm_run lives, fd lifecycle, the copy hooks (attached or not, why) and copies
 * observed / derived per ioctl, and what was lost or could not be decoded — the numbers a user checks first.
 */
import { formatDuration } from '../decode/format.js';
import type { SummaryRecord } from '../decode/records.js';
import { exitPathText, textTable as table } from '../report/exit-path-section.js';
import { copySourcesText, hooksText } from '../report/buffers-section.js';

export function summaryText(s: SummaryRecord): string {
  const out: string[] = [];
  const names = Object.keys(s.ioctls);
  out.push(`--- kvm-trace summary: ${s.events} events in ${s.duration_s.toFixed(2)} s, strategy ${s.strategy} ---`);
  if (names.length > 0) {
    const rows = [['ioctl', 'calls', 'errors', 'p50', 'p99', 'max']];
    for (const n of names) {
      const l = s.ioctls[n];
      rows.push([n, String(l.count), String(l.errors), formatDuration(l.p50_ns), formatDuration(l.p99_ns), formatDuration(l.max_ns)]);
    }
    out.push(...table(rows));
    if (s.aggregate === true) out.push(`aggregate: counted in the kernel; ${String(s.latency_estimate ?? 'p50/p99 are histogram estimates')}`);
  } else {
    out.push('no KVM ioctls seen');
  }
  for (const [who, reasons] of Object.entries(s.exits)) {
    const parts = Object.entries(reasons).map(([r, n]) => `${r}=${n}`);
    out.push(`exits pid/vcpu ${who}: ${parts.join(' ')}`);
  }
  // A VMM with dozens of vCPUs: per-exit tables for the first 8, one line for each of the others.
  if (s.aggregate === true && !s.exit_stats) out.push('KVM_RUN latency per exit reason: not kept by --aggregate (the exits above are counted per vCPU)');
  out.push(...exitPathText(s, 8));
  for (const r of s.kvm_run) {
    out.push(`kvm_run pid ${r.pid} vcpu ${r.vcpu} (fd ${r.fd}): kernel ${r.kernel_addr ?? '?'}  user ${r.user_addr ?? '?'}`);
  }
  out.push(`fds: ${s.fds.opened} opened, ${s.fds.closed} closed, ${s.fds.leaked} leaked`);
  out.push(...hooksText(s.hooks));
  const flags = s.flags;
  if (flags?.copies || flags?.unknown) {
    out.push(
      `copied buffers: ${flags.copies} (${flags.misaligned} misaligned, ${flags.cacheline_cross} crossing a cache line): ` +
        `${flags.observed} observed, ${flags.derived} derived${flags.unknown ? `, ${flags.unknown} more of unknown length` : ''}`,
    );
    out.push(...copySourcesText(Object.entries(flags.by_ioctl ?? {}).map(([name, c]) => ({ name, ...c }))));
  }
  out.push(`lost: ${s.lost}  decode errors: ${decodeErrors(s)}  unknown ioctls: ${s.unknown_ioctls}`);
  if (Number(s.ring_resyncs ?? 0) > 0) out.push(`ring buffer resynchronised ${Number(s.ring_resyncs)} times (${Number(s.ring_skipped_bytes ?? 0)} bytes skipped)`);
  return out.join('\n') + '\n';
}

/** "0", or the count with its causes ("3 (2 short, 1 threw)"). */
function decodeErrors(s: SummaryRecord): string {
  const n = Number(s.decode_errors ?? s.rejected ?? 0);
  const causes = s.decode_error_causes as Record<string, number> | undefined;
  const parts = Object.entries(causes ?? {})
    .filter(([, v]) => v > 0)
    .map(([k, v]) => `${v} ${k.replace('_', ' ')}`);
  return parts.length > 0 ? `${n} (${parts.join(', ')})` : String(n);
}
