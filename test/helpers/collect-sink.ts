/** A RecordSink that keeps every record in memory (capture tests read what the sinks got). */
import type { TraceRecord } from '../../src/decode/records.js';
import type { RecordSink } from '../../src/decode/sink.js';

export class CollectSink implements RecordSink {
  records: TraceRecord[] = [];
  closed = false;
  write(r: TraceRecord): void {
    this.records.push(r);
  }
  async close(): Promise<void> {
    this.closed = true;
  }
}
