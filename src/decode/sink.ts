/**
 * Where decoded records go: the JSONL file, the live terminal printer, the summary, the OpenTelemetry
 * exporter. A sink never throws from write(): it counts what it could not deliver and reports it on close().
 */
import type { TraceRecord } from './records.js';

/** What a capture has counted so far besides its records (running totals, as the summary will report them). */
export interface CaptureHealth {
  decode_errors: number;
  ring_resyncs: number;
}

export interface RecordSink {
  write(record: TraceRecord): void;
  /** The capture's running health counts, every second while it runs (a live metric needs them before the summary). */
  health?(h: CaptureHealth): void;
  /** Flush and release; resolves once everything written was delivered or counted as dropped. */
  close(): Promise<void>;
}
