/**
 * Where decoded records go: the JSONL file, the live terminal printer, the summary, the OpenTelemetry
 * exporter. A sink never throws from write(): it counts what it could not deliver and reports it on close().
 */
import type { TraceRecord } from './records.js';

export interface RecordSink {
  write(record: TraceRecord): void;
  /** Flush and release; resolves once everything written was delivered or counted as dropped. */
  close(): Promise<void>;
}
