/**
 * Follows a growing capture file (kvm-trace attach -o FILE) without holding it in memory: each read()
 * consumes what was appended since the last one and counts records, KVM_RUN records — the soak's
 * progress in exits — and lost records, and ends with the last complete line kept apart (the summary record).
 */
import { closeSync, openSync, readSync } from 'node:fs';

const CHUNK = 4 << 20;
const RUN = '"name":"KVM_RUN"';
const LOST = /\{"type":"lost","count":(\d+)\}/g;

export class CaptureTail {
  records = 0;
  runs = 0;
  /** Records lost so far (the tracer's `lost` records, written as the kernel counter moves). */
  lost = 0;
  bytes = 0;
  /** The last complete line read (at the end: the summary record). */
  lastLine = '';
  private fd: number | undefined;
  private carry = '';
  private readonly buf = Buffer.alloc(CHUNK);

  constructor(private readonly path: string) {}

  /** Read what was appended; returns the bytes read. */
  read(): number {
    if (this.fd === undefined) {
      try {
        this.fd = openSync(this.path, 'r');
      } catch {
        return 0; // not created yet
      }
    }
    let total = 0;
    for (;;) {
      const n = readSync(this.fd, this.buf, 0, CHUNK, this.bytes);
      if (n <= 0) break;
      this.bytes += n;
      total += n;
      const text = this.carry + this.buf.toString('utf8', 0, n);
      const end = text.lastIndexOf('\n');
      if (end < 0) {
        this.carry = text;
        continue;
      }
      const lines = text.slice(0, end);
      this.carry = text.slice(end + 1);
      let at = -1;
      while ((at = lines.indexOf('\n', at + 1)) >= 0) this.records++;
      this.records++;
      at = -1;
      while ((at = lines.indexOf(RUN, at + 1)) >= 0) this.runs++;
      for (const m of lines.matchAll(LOST)) this.lost += Number(m[1]);
      this.lastLine = lines.slice(lines.lastIndexOf('\n') + 1);
    }
    return total;
  }

  close(): void {
    if (this.fd !== undefined) closeSync(this.fd);
    this.fd = undefined;
  }
}
