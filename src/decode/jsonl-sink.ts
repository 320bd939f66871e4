/**
 * RecordSink writing one JSON object per line to a file (or any Writable). Lines are encoded as bytes into
 * chunks (json.ts; default 256 KiB) so a million records are a few thousand writes, not a million; when the stream pushes
 * back (write() returns false) chunks wait in memory until 'drain', up to `maxBufferedBytes`, past which
 * records are dropped and counted rather than growing memory without bound. close() flushes everything,
 * ends the stream (when the sink opened it) and resolves once the data is written — or, after a stream
 * error, once what could not be written is counted in `stats.dropped` (the error is kept in `error`).
 */
import { createWriteStream } from 'node:fs';
import type { Writable } from 'node:stream';
import type { RecordSink } from './sink.js';
import { JsonlEncoder } from './json.js';
import type { TraceRecord } from './records.js';

export interface JsonlSinkOptions {
  /** Bytes collected before a chunk is handed to the stream (default 256 KiB). */
  chunkBytes?: number;
  /** Bytes allowed to wait for the stream to drain before records are dropped (default 256 MiB). */
  maxBufferedBytes?: number;
  /** End the stream on close() (default: true for a path, false for a caller's Writable). */
  endStream?: boolean;
}

export interface JsonlSinkStats {
  /** Records accepted (written or still buffered). */
  records: number;
  /** Bytes handed to the stream. */
  bytes: number;
  /** Records not delivered (stream error, buffer full while the stream pushed back, after close). */
  dropped: number;
}

interface Chunk {
  bytes: Buffer;
  records: number;
}

export class JsonlSink implements RecordSink {
  readonly stats: JsonlSinkStats = { records: 0, bytes: 0, dropped: 0 };
  /** The stream's error, if one happened (records after it are dropped). */
  error: Error | undefined;
  private readonly stream: Writable;
  private readonly endStream: boolean;
  private readonly maxBuffered: number;
  private readonly encoder: JsonlEncoder;
  private waiting: Chunk[] = [];
  private waitingBytes = 0;
  private blocked = false;
  private closing: Promise<void> | undefined;

  /** Write to `target`: a path (created or truncated) or a Writable. */
  constructor(target: string | Writable, opts: JsonlSinkOptions = {}) {
    this.stream = typeof target === 'string' ? createWriteStream(target, { flags: 'w' }) : target;
    this.endStream = opts.endStream ?? typeof target === 'string';
    this.encoder = new JsonlEncoder((bytes, records) => this.chunk({ bytes, records }), opts.chunkBytes ?? 256 * 1024);
    this.maxBuffered = opts.maxBufferedBytes ?? 256 * 1024 * 1024;
    this.stream.on('error', (e: Error) => this.fail(e));
    this.stream.on('drain', () => this.onDrain());
  }

  /** Open `path` and wait until it is open: a bad path rejects here with the system's reason. */
  static async open(path: string, opts: JsonlSinkOptions = {}): Promise<JsonlSink> {
    const stream = createWriteStream(path, { flags: 'w' });
    await new Promise<void>((resolve, reject) => {
      stream.once('open', () => resolve());
      stream.once('error', reject);
    });
    return new JsonlSink(stream, { endStream: true, ...opts });
  }

  write(record: TraceRecord): void {
    if (this.error || this.closing) {
      this.stats.dropped++;
      return;
    }
    if (this.blocked && this.waitingBytes > this.maxBuffered) {
      this.stats.dropped++;
      return;
    }
    try {
      this.encoder.write(record);
    } catch {
      this.stats.dropped++; // not serialisable (a decoder bug): counted, never thrown
      return;
    }
    this.stats.records++;
  }

  close(): Promise<void> {
    this.closing ??= this.finish();
    return this.closing;
  }

  /** A chunk of whole lines from the encoder: to the stream, or queued while the stream pushes back. */
  private chunk(chunk: Chunk): void {
    if (this.error) {
      this.stats.dropped += chunk.records;
      return;
    }
    if (this.blocked) {
      this.waiting.push(chunk);
      this.waitingBytes += chunk.bytes.length;
    } else {
      this.push(chunk);
    }
  }

  private push(chunk: Chunk): void {
    this.stats.bytes += chunk.bytes.length;
    if (!this.stream.write(chunk.bytes, (err) => err || this.encoder.recycle(chunk.bytes))) this.blocked = true;
  }

  private onDrain(): void {
    this.blocked = false;
    while (this.waiting.length > 0 && !this.blocked) {
      const chunk = this.waiting.shift()!;
      this.waitingBytes -= chunk.bytes.length;
      this.push(chunk);
    }
  }

  private fail(e: Error): void {
    this.error ??= e;
    this.stats.dropped += this.waiting.reduce((n, c) => n + c.records, 0);
    this.waiting = [];
    this.waitingBytes = 0;
    this.blocked = false;
  }

  private async finish(): Promise<void> {
    this.encoder.flush();
    while ((this.blocked || this.waiting.length > 0) && !this.error) {
      await new Promise<void>((resolve) => {
        const done = (): void => {
          this.stream.off('drain', done);
          this.stream.off('error', done);
          resolve();
        };
        this.stream.once('drain', done);
        this.stream.once('error', done);
      });
    }
    if (this.error) return;
    await new Promise<void>((resolve) => {
      const done = (): void => resolve();
      this.stream.once('error', done);
      if (this.endStream) this.stream.end(done);
      else this.stream.write('', done); // not ours to end: resolves once earlier writes went through
    });
  }
}
