/**
 * Reads a binary capture (format.ts) section by section with positioned reads, so a file of any size is
 * decoded in constant memory: the head (META, BTF, PROC) first, then each RECS section's frames handed out
 * in file order — raw records zero-copy as (view, offset, length), like the live ring — and END last.
 * Anything that is not a capture, a newer version, or a damaged section is a CaptureFileError with one
 * clear line; a file cut short ends at its last whole section (`end` stays null).
 */
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import type { RecordHandler } from '../../ringbuf/records.js';
import type { ProcSeed } from '../../decode/processes.js';
import {
  FILE_HEADER_BYTES, FRAME_HEADER_BYTES, FRAME_LOST, FRAME_RECORD, MAGIC, SECTION_HEADER_BYTES, VERSION, pad8,
  type CaptureEnd, type CaptureMeta,
} from './format.js';

export class CaptureFileError extends Error {
  constructor(readonly file: string, message: string) {
    super(`${file}: ${message}`);
    this.name = 'CaptureFileError';
  }
}

interface Section {
  tag: string;
  payload: Buffer;
}

/** Does this file start like a binary capture? (For commands that take a capture or JSONL.) */
export function isCaptureFile(path: string): boolean {
  let fd: number | undefined;
  try {
    fd = openSync(path, 'r');
    const b = Buffer.alloc(MAGIC.length);
    return readSync(fd, b, 0, b.length, 0) === b.length && b.toString('latin1') === MAGIC;
  } catch {
    return false;
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

export class CaptureReader {
  readonly meta: CaptureMeta;
  readonly btf: Uint8Array;
  /** KVM's module BTF (split over `btf`), when the capturing kernel had KVM as a module. */
  readonly kvmBtf: Uint8Array | undefined;
  readonly seeds: ProcSeed[];
  /** END's contents once every frame was read; null when the file has none (cut short). */
  end: CaptureEnd | null = null;
  private pos = FILE_HEADER_BYTES;
  private readonly size: number;

  private constructor(
    readonly file: string,
    private readonly fd: number,
  ) {
    this.size = fstatSync(fd).size;
    const head = Buffer.alloc(FILE_HEADER_BYTES);
    if (this.size < FILE_HEADER_BYTES || readSync(fd, head, 0, FILE_HEADER_BYTES, 0) < FILE_HEADER_BYTES || head.toString('latin1', 0, 8) !== MAGIC) {
      throw new CaptureFileError(file, 'not a kvm-trace binary capture (no KVMTRCAP header; written by `kvm-trace attach -w`?)');
    }
    const version = head.readUInt32LE(8);
    if (version !== VERSION) throw new CaptureFileError(file, `capture format version ${version}; this kvm-trace reads version ${VERSION}`);
    this.pos = head.readUInt32LE(12);
    const meta = this.next('META');
    const btf = this.next('BTF ');
    let proc = this.next('BTFK', 'PROC');
    if (proc.tag === 'BTFK') {
      this.kvmBtf = proc.payload;
      proc = this.next('PROC');
    }
    this.meta = this.json<CaptureMeta>(meta);
    this.btf = btf.payload;
    this.seeds = this.json<ProcSeed[]>(proc);
  }

  /** Open `path` and read its head. The caller closes it. */
  static open(path: string): CaptureReader {
    let fd: number;
    try {
      fd = openSync(path, 'r');
    } catch (err) {
      throw new CaptureFileError(path, `cannot read: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    }
    try {
      return new CaptureReader(path, fd);
    } catch (err) {
      closeSync(fd);
      throw err;
    }
  }

  /**
   * Hand every frame to `onRecord` (raw records: the view is valid during the call) or `onLost` (lost
   * marks), in file order, until END or the end of the file. Returns the raw records read.
   */
  forEachFrame(onRecord: RecordHandler, onLost: (count: number) => void): number {
    let records = 0;
    for (let s = this.section(); s; s = this.section()) {
      if (s.tag === 'END ') {
        this.end = this.json<CaptureEnd>(s);
        break;
      }
      if (s.tag !== 'RECS') continue; // a section a later version added: skipped
      const dv = new DataView(s.payload.buffer, s.payload.byteOffset, s.payload.byteLength);
      for (let at = 0; at < s.payload.length; ) {
        if (at + FRAME_HEADER_BYTES > s.payload.length) throw this.damaged(`a frame header cut short in the records before byte ${this.pos}`);
        const len = dv.getUint32(at, true);
        const kind = dv.getUint32(at + 4, true);
        const data = at + FRAME_HEADER_BYTES;
        if (data + len > s.payload.length) throw this.damaged(`a frame of ${len} bytes runs past its section (before byte ${this.pos})`);
        if (kind === FRAME_RECORD) {
          records++;
          onRecord(dv, data, len);
        } else if (kind === FRAME_LOST && len === 8) {
          onLost(Number(dv.getBigUint64(data, true)));
        } else throw this.damaged(`unknown frame kind ${kind} (before byte ${this.pos})`);
        at += pad8(FRAME_HEADER_BYTES + len);
      }
    }
    return records;
  }

  close(): void {
    closeSync(this.fd);
  }

  /** The next section, which must be one of `tags`. */
  private next(...tags: string[]): Section {
    const s = this.section();
    const want = tags.map((t) => t.trim()).join(' or ');
    if (!s || !tags.includes(s.tag)) throw this.damaged(`expected a ${want} section${s ? `, found ${s.tag.trim()}` : ', the file ends'}`);
    return s;
  }

  /** The section at the read position, or null at the end of the file (or of its whole sections). */
  private section(): Section | null {
    if (this.pos + SECTION_HEADER_BYTES > this.size) return null;
    const h = Buffer.alloc(SECTION_HEADER_BYTES);
    readSync(this.fd, h, 0, SECTION_HEADER_BYTES, this.pos);
    const len = Number(h.readBigUInt64LE(8));
    const start = this.pos + SECTION_HEADER_BYTES;
    if (start + len > this.size) return null; // cut short while it was written
    const payload = Buffer.allocUnsafe(len);
    if (len > 0 && readSync(this.fd, payload, 0, len, start) < len) throw this.damaged('a short read');
    this.pos = start + pad8(len);
    return { tag: h.toString('latin1', 0, 4), payload };
  }

  private json<T>(s: Section): T {
    try {
      return JSON.parse(s.payload.toString('utf8')) as T;
    } catch {
      throw this.damaged(`its ${s.tag.trim()} section is not valid JSON`);
    }
  }

  private damaged(what: string): CaptureFileError {
    return new CaptureFileError(this.file, `damaged capture: ${what}`);
  }
}
