/**
 * The exit path of full-capture records in one sink-shaped object: the perf-kvm-stat-style exit table
 * (exit-stats.ts) and the VMM handling time (vmm-handling.ts). The capture session and the report feed it
 * every record and put `fields()` into the summary / the report model.
 */
import type { ExitReasonStats, TraceRecord, VmmHandlingSummary } from '../decode/records.js';
import { ExitStatsTracker } from './exit-stats.js';
import { VmmHandlingTracker, type VmmHandlingOptions } from './vmm-handling.js';

export interface ExitPathFields {
  exit_stats: ExitReasonStats[];
  vmm_handling: VmmHandlingSummary;
}

export class ExitPathAnalyzer {
  private readonly exits = new ExitStatsTracker();
  private readonly handling: VmmHandlingTracker;

  constructor(opts: VmmHandlingOptions = {}) {
    this.handling = new VmmHandlingTracker(opts);
  }

  write(r: TraceRecord): void {
    if (r.type === 'ioctl' && r.name === 'KVM_RUN') this.exits.add(r);
    this.handling.write(r);
  }

  /** KVM_RUN records seen. */
  get runs(): number {
    return this.exits.samples;
  }

  /** The summary fields; undefined when no KVM_RUN was seen (nothing measured, so nothing to say). */
  fields(): ExitPathFields | undefined {
    if (this.runs === 0) return undefined;
    return { exit_stats: this.exits.rows(), vmm_handling: this.handling.summary() };
  }
}
