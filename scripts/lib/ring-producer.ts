/**
 * A real kernel ring-buffer producer for tests and benchmarks (dev tooling, not part of the package's API), without clang or libbpf: a BPF_MAP_TYPE_RINGBUF
 * map, a one-element array map holding {seq, fails}, and a hand-assembled socket-filter program run with
 * BPF_PROG_TEST_RUN (`repeat` runs per syscall). Each run emits one record whose bytes are the little-endian
 * u64 `seq` repeated, `len = 8 + (seq & 31)` bytes long (so strides and alignment vary), via
 * bpf_ringbuf_output; with `discard`, every seq with (seq & 7) == 7 is instead reserved and discarded
 * (bpf_ringbuf_discard), leaving a real DISCARD record in the ring. A full ring makes the output fail:
 * the program counts that in `fails` and does not advance seq — exactly the "lost" case of the tracer.
 *
 * RingRecordInjector is the same idea pointed at someone else's ring: a program that writes given bytes as
 * one record into an existing ring-buffer map (kvm-trace's own, mid-capture), to prove a capture survives
 * records no BPF program of ours would write.
 */
import {
  BPF_MAP_TYPE_ARRAY,
  BPF_MAP_TYPE_RINGBUF,
  BPF_PROG_TYPE_SOCKET_FILTER,
  bpfClose,
  bpfMapCreate,
  bpfMapLookup,
  bpfMapUpdate,
  bpfProgLoad,
  bpfProgTestRun,
} from './bpf-syscall.js';

export const BPF_RB_NO_WAKEUP = 1;
export const BPF_RB_FORCE_WAKEUP = 2;

// --- a minimal eBPF assembler: just what the producer needs -------------------------------------------
const LD = 0x00, LDX = 0x01, ST = 0x02, STX = 0x03, JMP = 0x05, ALU64 = 0x07;
const W = 0x00, DW = 0x18, IMM = 0x00, MEM = 0x60;
const K = 0x00, X = 0x08;
const ADD = 0x00, AND = 0x50, MOV = 0xb0;
const JA = 0x00, JEQ = 0x10, JGT = 0x20, JNE = 0x50, CALL = 0x80, EXIT = 0x90;
const PSEUDO_MAP_FD = 1;
const FN_map_lookup_elem = 1, FN_ringbuf_output = 130, FN_ringbuf_reserve = 131, FN_ringbuf_discard = 133;

type Insn = { code: number; dst: number; src: number; off: number | string; imm: number };

class Asm {
  private readonly insns: Insn[] = [];
  private readonly labels = new Map<string, number>();
  private emit(code: number, dst: number, src: number, off: number | string, imm: number): this {
    this.insns.push({ code, dst, src, off, imm });
    return this;
  }
  label(name: string): this {
    this.labels.set(name, this.insns.length);
    return this;
  }
  movImm(dst: number, imm: number): this { return this.emit(ALU64 | MOV | K, dst, 0, 0, imm); }
  movReg(dst: number, src: number): this { return this.emit(ALU64 | MOV | X, dst, src, 0, 0); }
  addImm(dst: number, imm: number): this { return this.emit(ALU64 | ADD | K, dst, 0, 0, imm); }
  andImm(dst: number, imm: number): this { return this.emit(ALU64 | AND | K, dst, 0, 0, imm); }
  ldxDw(dst: number, src: number, off: number): this { return this.emit(LDX | MEM | DW, dst, src, off, 0); }
  stxDw(dst: number, off: number, src: number): this { return this.emit(STX | MEM | DW, dst, src, off, 0); }
  stW(dst: number, off: number, imm: number): this { return this.emit(ST | MEM | W, dst, 0, off, imm); }
  ldMapFd(dst: number, fd: number): this {
    this.emit(LD | DW | IMM, dst, PSEUDO_MAP_FD, 0, fd);
    return this.emit(0, 0, 0, 0, 0);
  }
  jeqImm(dst: number, imm: number, to: string): this { return this.emit(JMP | JEQ | K, dst, 0, to, imm); }
  jneImm(dst: number, imm: number, to: string): this { return this.emit(JMP | JNE | K, dst, 0, to, imm); }
  jgtImm(dst: number, imm: number, to: string): this { return this.emit(JMP | JGT | K, dst, 0, to, imm); }
  ja(to: string): this { return this.emit(JMP | JA, 0, 0, to, 0); }
  call(fn: number): this { return this.emit(JMP | CALL, 0, 0, 0, fn); }
  exit(): this { return this.emit(JMP | EXIT, 0, 0, 0, 0); }

  assemble(): Buffer {
    const out = Buffer.alloc(this.insns.length * 8);
    this.insns.forEach((ins, i) => {
      let off = ins.off;
      if (typeof off === 'string') {
        const target = this.labels.get(off);
        if (target === undefined) throw new Error(`bpf asm: unknown label ${off}`);
        off = target - i - 1;
      }
      out.writeUInt8(ins.code, i * 8);
      out.writeUInt8((ins.src << 4) | ins.dst, i * 8 + 1);
      out.writeInt16LE(off, i * 8 + 2);
      out.writeInt32LE(ins.imm, i * 8 + 4);
    });
    return out;
  }
}

/** Record length the producer emits for sequence number `seq`. */
export function producedLen(seq: number): number {
  return 8 + (seq & 31);
}

/** True when the producer (with `discard`) discards the record of `seq` instead of submitting it. */
export function producedDiscarded(seq: number): boolean {
  return (seq & 7) === 7;
}

function program(stateFd: number, ringFd: number, flags: number, discard: boolean): Buffer {
  const a = new Asm();
  const R0 = 0, R1 = 1, R2 = 2, R3 = 3, R4 = 4, R6 = 6, R7 = 7, R8 = 8, FP = 10;
  a.stW(FP, -4, 0).movReg(R2, FP).addImm(R2, -4).ldMapFd(R1, stateFd).call(FN_map_lookup_elem);
  a.jeqImm(R0, 0, 'out').movReg(R6, R0).ldxDw(R7, R6, 0);
  for (let off = -56; off < -8; off += 8) a.stxDw(FP, off, R7); // record = seq repeated, 48 bytes of stack
  if (discard) a.movReg(R1, R7).andImm(R1, 7).jeqImm(R1, 7, 'discard');
  a.movReg(R8, R7).andImm(R8, 31).addImm(R8, 8); // len = 8 + (seq & 31), bounded for the verifier
  a.ldMapFd(R1, ringFd).movReg(R2, FP).addImm(R2, -56).movReg(R3, R8).movImm(R4, flags).call(FN_ringbuf_output);
  a.jneImm(R0, 0, 'fail');
  a.label('next').addImm(R7, 1).stxDw(R6, 0, R7).ja('out');
  if (discard) {
    a.label('discard').ldMapFd(R1, ringFd).movImm(R2, 16).movImm(R3, 0).call(FN_ringbuf_reserve);
    a.jeqImm(R0, 0, 'fail').stxDw(R0, 0, R7).stxDw(R0, 8, R7);
    a.movReg(R1, R0).movImm(R2, 0).call(FN_ringbuf_discard).ja('next');
  }
  a.label('fail').ldxDw(R1, R6, 8).addImm(R1, 1).stxDw(R6, 8, R1);
  a.label('out').movImm(R0, 0).exit();
  return a.assemble();
}

export interface ProducerOptions {
  /** bpf_ringbuf_output flags: 0 (wake when the consumer caught up), BPF_RB_NO_WAKEUP, BPF_RB_FORCE_WAKEUP. */
  flags?: number;
  /** Discard every record whose (seq & 7) == 7 (default false). */
  discard?: boolean;
}

/** A real BPF ring buffer plus a program that writes sequence-numbered records into it on demand. */
export class TestRingProducer {
  /** The ring-buffer map fd (what RawRingReader / RingBufferConsumer map). */
  readonly ringFd: number;
  readonly size: number;
  private readonly stateFd: number;
  private readonly progFd: number;
  private readonly packet = Buffer.alloc(64); // socket filters need at least an Ethernet header of input
  private closed = false;

  /** Create a ring of `size` bytes (power of two, multiple of the page size) and load the producer. */
  constructor(size: number, opts: ProducerOptions = {}) {
    this.size = size;
    this.ringFd = bpfMapCreate(BPF_MAP_TYPE_RINGBUF, 0, 0, size);
    try {
      this.stateFd = bpfMapCreate(BPF_MAP_TYPE_ARRAY, 4, 16, 1);
      try {
        this.progFd = bpfProgLoad(
          BPF_PROG_TYPE_SOCKET_FILTER,
          program(this.stateFd, this.ringFd, opts.flags ?? 0, opts.discard ?? false),
          'kt_rb_producer',
        );
      } catch (e) {
        bpfClose(this.stateFd);
        throw e;
      }
    } catch (e) {
      bpfClose(this.ringFd);
      throw e;
    }
  }

  /** Run the program `n` times (one BPF_PROG_TEST_RUN syscall): up to n records, fewer if the ring fills. */
  produce(n: number): void {
    if (n > 0) bpfProgTestRun(this.progFd, this.packet, n);
  }

  /** {seq: records emitted (submitted or discarded), fails: outputs refused because the ring was full}. */
  counters(): { seq: number; fails: number } {
    const key = Buffer.alloc(4);
    const value = Buffer.alloc(16);
    bpfMapLookup(this.stateFd, key, value);
    return { seq: Number(value.readBigUInt64LE(0)), fails: Number(value.readBigUInt64LE(8)) };
  }

  /** Close the program and both maps (the kernel frees them once no mapping refers to the ring). */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    bpfClose(this.progFd);
    bpfClose(this.stateFd);
    bpfClose(this.ringFd);
  }
}

/** Most bytes one injected record may have. */
export const INJECT_MAX = 2048;

/** payload map value: u64 length, then up to INJECT_MAX bytes; the program outputs them as one record. */
function injectProgram(payloadFd: number, ringFd: number, flags: number): Buffer {
  const a = new Asm();
  const R0 = 0, R1 = 1, R2 = 2, R3 = 3, R4 = 4, R6 = 6, FP = 10;
  a.stW(FP, -4, 0).movReg(R2, FP).addImm(R2, -4).ldMapFd(R1, payloadFd).call(FN_map_lookup_elem);
  a.jeqImm(R0, 0, 'out').movReg(R6, R0).ldxDw(R3, R6, 0);
  a.jgtImm(R3, INJECT_MAX, 'out'); // the verifier needs the length bounded by the value's size
  a.movReg(R2, R6).addImm(R2, 8).ldMapFd(R1, ringFd).movImm(R4, flags).call(FN_ringbuf_output);
  a.label('out').movImm(R0, 0).exit();
  return a.assemble();
}

/** Writes chosen bytes as records into an existing ring-buffer map (by its fd), through a real BPF program. */
export class RingRecordInjector {
  private readonly payloadFd: number;
  private readonly progFd: number;
  private readonly packet = Buffer.alloc(64);
  private readonly value = Buffer.alloc(8 + INJECT_MAX);
  private closed = false;

  /** `flags`: bpf_ringbuf_output flags (default BPF_RB_NO_WAKEUP, as kvm-trace's own programs submit). */
  constructor(ringFd: number, flags = BPF_RB_NO_WAKEUP) {
    this.payloadFd = bpfMapCreate(BPF_MAP_TYPE_ARRAY, 4, 8 + INJECT_MAX, 1);
    try {
      this.progFd = bpfProgLoad(BPF_PROG_TYPE_SOCKET_FILTER, injectProgram(this.payloadFd, ringFd, flags), 'kt_rb_inject');
    } catch (e) {
      bpfClose(this.payloadFd);
      throw e;
    }
  }

  /** Output `bytes` as one record, `times` times. */
  inject(bytes: Uint8Array, times = 1): void {
    if (bytes.length > INJECT_MAX) throw new RangeError(`an injected record holds at most ${INJECT_MAX} bytes`);
    this.value.fill(0);
    this.value.writeBigUInt64LE(BigInt(bytes.length), 0);
    this.value.set(bytes, 8);
    bpfMapUpdate(this.payloadFd, Buffer.alloc(4), this.value);
    if (times > 0) bpfProgTestRun(this.progFd, this.packet, times);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    bpfClose(this.progFd);
    bpfClose(this.payloadFd);
  }
}
