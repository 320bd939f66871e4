/**
 * A tiny raw bpf(2) binding: create a map, load a hand-assembled program, run it with BPF_PROG_TEST_RUN,
 * look up a map element. It exists so the ring-buffer consumer can be tested (and benchmarked) against a
 * REAL kernel ring buffer without clang or libbpf: the producer is a few BPF instructions (see
 * scripts/lib/ring-producer.ts). The real tracer loads its object through libbpf (src/ffi/libbpf.ts). Dev
 * tooling for tests and the benchmark, kept out of src/.
 *
 * The bpf_attr variants are declared with the C layout DSL (offsets computed by C rules, not typed by
 * hand); test/ringbuf-kernel.test.ts proves them equal to the running kernel's BTF of union bpf_attr.
 */
import koffi from 'koffi';
import { SyscallError } from '../../src/ffi/errors.js';
import { array, encode, memberAt, struct, u32, u64, u8, type RecordType } from '../../src/cdata/layout.js';

const libc = koffi.load('libc.so.6');
// syscall(2) is variadic; a fixed-arity alias is fine on x86_64 (glibc's syscall() is plain asm).
const c_syscall = libc.func('syscall', 'long', ['long', 'int', 'void *', 'unsigned int']);
const c_close = libc.func('int close(int fd)');

const SYS_bpf = 321; // x86_64

export const BPF_MAP_CREATE = 0;
export const BPF_MAP_LOOKUP_ELEM = 1;
export const BPF_MAP_UPDATE_ELEM = 2;
export const BPF_PROG_LOAD = 5;
export const BPF_PROG_TEST_RUN = 10;
export const BPF_MAP_GET_FD_BY_ID = 14;
export const BPF_OBJ_GET_INFO_BY_FD = 15;

export const BPF_MAP_TYPE_ARRAY = 2;
export const BPF_MAP_TYPE_RINGBUF = 27;
export const BPF_PROG_TYPE_SOCKET_FILTER = 1;

/** union bpf_attr, BPF_MAP_CREATE arm (leading members only; the kernel accepts a zero tail). */
export const mapCreateAttr: RecordType = struct('bpf_map_create_attr', [
  ['map_type', u32],
  ['key_size', u32],
  ['value_size', u32],
  ['max_entries', u32],
  ['map_flags', u32],
]);

/** union bpf_attr, BPF_MAP_*_ELEM arm. */
export const mapElemAttr: RecordType = struct('bpf_map_elem_attr', [
  ['map_fd', u32],
  ['key', u64],
  ['value', u64],
  ['flags', u64],
]);

/** union bpf_attr, BPF_PROG_LOAD arm (up to prog_name). */
export const progLoadAttr: RecordType = struct('bpf_prog_load_attr', [
  ['prog_type', u32],
  ['insn_cnt', u32],
  ['insns', u64],
  ['license', u64],
  ['log_level', u32],
  ['log_size', u32],
  ['log_buf', u64],
  ['kern_version', u32],
  ['prog_flags', u32],
  ['prog_name', array(u8, 16)],
]);

/** union bpf_attr, BPF_PROG_TEST_RUN arm (the `test` struct, up to repeat/duration). */
export const progTestRunAttr: RecordType = struct('bpf_prog_test_run_attr', [
  ['prog_fd', u32],
  ['retval', u32],
  ['data_size_in', u32],
  ['data_size_out', u32],
  ['data_in', u64],
  ['data_out', u64],
  ['repeat', u32],
  ['duration', u32],
]);

/** Size passed as bpf(2)'s third argument: large enough for every arm used here, zero-filled tail. */
const ATTR_SIZE = 128;

function bpf(cmd: number, attr: Buffer, op: string): number {
  const r = Number(c_syscall(SYS_bpf, cmd, attr, ATTR_SIZE));
  if (r < 0) throw new SyscallError(op, koffi.errno());
  return r;
}

function attrOf(type: RecordType, value: Record<string, number | bigint | number[]>): Buffer {
  const buf = Buffer.alloc(ATTR_SIZE);
  encode(type, new DataView(buf.buffer, buf.byteOffset, buf.byteLength), value);
  return buf;
}

/** Create a map; returns its fd. */
export function bpfMapCreate(mapType: number, keySize: number, valueSize: number, maxEntries: number): number {
  return bpf(
    BPF_MAP_CREATE,
    attrOf(mapCreateAttr, { map_type: mapType, key_size: keySize, value_size: valueSize, max_entries: maxEntries }),
    'bpf(BPF_MAP_CREATE)',
  );
}

/** Read one element of a map into `value` (which must be value_size bytes). */
export function bpfMapLookup(mapFd: number, key: Buffer, value: Buffer): void {
  bpf(
    BPF_MAP_LOOKUP_ELEM,
    attrOf(mapElemAttr, { map_fd: mapFd, key: koffi.address(key), value: koffi.address(value) }),
    'bpf(BPF_MAP_LOOKUP_ELEM)',
  );
}

/** Write one element of a map (BPF_ANY). */
export function bpfMapUpdate(mapFd: number, key: Buffer, value: Buffer): void {
  bpf(
    BPF_MAP_UPDATE_ELEM,
    attrOf(mapElemAttr, { map_fd: mapFd, key: koffi.address(key), value: koffi.address(value), flags: 0 }),
    'bpf(BPF_MAP_UPDATE_ELEM)',
  );
}

/** A new fd for the map with kernel id `id` (root). */
export function bpfMapFdById(id: number): number {
  const attr = Buffer.alloc(ATTR_SIZE);
  attr.writeUInt32LE(id, 0); // map_id
  return bpf(BPF_MAP_GET_FD_BY_ID, attr, 'bpf(BPF_MAP_GET_FD_BY_ID)');
}

/** struct bpf_map_info's first fields: type, id, sizes, name. */
export function bpfMapInfo(fd: number): { type: number; id: number; maxEntries: number; name: string } {
  const info = Buffer.alloc(88);
  const attr = Buffer.alloc(ATTR_SIZE);
  attr.writeUInt32LE(fd, 0); // bpf_fd
  attr.writeUInt32LE(info.length, 4); // info_len
  attr.writeBigUInt64LE(BigInt(koffi.address(info)), 8); // info
  bpf(BPF_OBJ_GET_INFO_BY_FD, attr, 'bpf(BPF_OBJ_GET_INFO_BY_FD)');
  const name = info.subarray(24, 40);
  const end = name.indexOf(0);
  return { type: info.readUInt32LE(0), id: info.readUInt32LE(4), maxEntries: info.readUInt32LE(16), name: name.subarray(0, end < 0 ? 16 : end).toString('latin1') };
}

/**
 * Load a program from raw 8-byte instructions. On a verifier rejection the error message carries the
 * verifier log's last lines, which is the only useful explanation.
 */
export function bpfProgLoad(progType: number, insns: Buffer, name = 'kt_prog', license = 'GPL'): number {
  const lic = Buffer.from(`${license}\0`);
  const log = Buffer.alloc(64 * 1024);
  const nameBytes = [...Buffer.from(name.slice(0, 15))];
  const attr = attrOf(progLoadAttr, {
    prog_type: progType,
    insn_cnt: insns.length / 8,
    insns: koffi.address(insns),
    license: koffi.address(lic),
    log_level: 1,
    log_size: log.length,
    log_buf: koffi.address(log),
    prog_name: nameBytes,
  });
  const r = Number(c_syscall(SYS_bpf, BPF_PROG_LOAD, attr, ATTR_SIZE));
  if (r < 0) {
    const errno = koffi.errno();
    const text = log.toString('utf8', 0, Math.max(0, log.indexOf(0))).trim().split('\n').slice(-6).join(' | ');
    throw new SyscallError('bpf(BPF_PROG_LOAD)', errno, text || undefined);
  }
  return r;
}

/** Run a program `repeat` times over `data` (BPF_PROG_TEST_RUN); returns the last run's return value. */
export function bpfProgTestRun(progFd: number, data: Buffer, repeat = 1): number {
  const attr = attrOf(progTestRunAttr, {
    prog_fd: progFd,
    data_size_in: data.length,
    data_in: koffi.address(data),
    repeat,
  });
  bpf(BPF_PROG_TEST_RUN, attr, 'bpf(BPF_PROG_TEST_RUN)');
  return attr.readUInt32LE(memberAt(progTestRunAttr, 'retval').offset);
}

/** Close a bpf fd (map or program). */
export function bpfClose(fd: number): void {
  if ((c_close(fd) as number) < 0) throw new SyscallError('close', koffi.errno());
}
