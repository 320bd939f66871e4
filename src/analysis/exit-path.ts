/**
 * The exit path of full-capture records in one sink-shaped object: the perf-kvm-stat-style exit table
 * (exit-stats.ts), the VMM handling time (vmm-handling.ts) and, where KVM_RUN records carry hardware-exit
 * fields, the per-vCPU time split (run-split.ts). The capture session and the report feed it every record
 * and put `fields()` into the summary / the report model.
 */
import type { ExitReasonStats, RunSplit, TraceRecord, VmmHandlingSummary } from '../decode/records.js';
import { ExitStatsTracker } from './exit-stats.js';
import { RunSplitTracker } from './run-split.js';
import { VmmHandlingTracker, type VmmHandlingOptions } from './vmm-handling.js';

export interface ExitPathFields {
  exit_stats: ExitReasonStats[];
  vmm_handling: VmmHandlingSummary;
  run_split?: RunSplit[];
}

export class ExitPathAnalyzer {
  private readonly exits = new ExitStatsTracker();
  private readonly split = new RunSplitTracker();
  private readonly handling: VmmHandlingTracker;

  constructor(opts: VmmHandlingOptions = {}) {
    this.handling = new VmmHandlingTracker(opts);
  }

  write(r: TraceRecord): void {
    if (r.type === 'ioctl' && r.name === 'KVM_RUN') {
      this.exits.add(r);
      this.split.add(r);
    }
    this.handling.write(r);
  }

  /** KVM_RUN records seen. */
  get runs(): number {
    return this.exits.samples;
  }

  /** The summary fields; undefined when no KVM_RUN was seen (nothing measured, so nothing to say). */
  fields(): ExitPathFields | undefined {
    if (this.runs === 0) return undefined;
    const vmm_handling = this.handling.summary();
    const split = this.split.rows(vmm_handling);
    return { exit_stats: this.exits.rows(), vmm_handling, ...(split.length ? { run_split: split } : {}) };
  }
}
