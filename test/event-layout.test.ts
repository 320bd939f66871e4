// The TS mirror of bpf/kvm_trace.h (src/bpf/event-layout.ts) must equal what clang compiled into the BPF
// object: every struct size and every member offset and size, read from the object's own BTF.
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { Btf } from '../src/btf/index.js';
import { flattenLayout } from '../src/btf/layout.js';
import { flatten, type RecordType } from '../src/cdata/layout.js';
import * as layout from '../src/bpf/event-layout.js';
import { EVENT_STRUCTS, HDR, IOCTL, KT_EV_IOCTL } from '../src/bpf/event-layout.js';
import {
  encodeCopy,
  encodeExit,
  encodeFd,
  encodeIoctl,
  encodeMmap,
  parseCopy,
  parseExit,
  parseFd,
  parseIoctl,
  parseMmap,
} from './helpers/kt-records.js';

const OBJ = fileURLToPath(new URL('../bpf/prebuilt/kvm_trace.bpf.o', import.meta.url));
const haveObj = existsSync(OBJ);
if (!haveObj) console.log(`event-layout: BTF comparison skipped — ${OBJ} is not built yet`);

describe.skipIf(!haveObj)('event layout equals the BPF object BTF', () => {
  const btf = haveObj ? Btf.fromElf(OBJ) : undefined;

  it.each(Object.entries(EVENT_STRUCTS))('struct %s', (name, ours: RecordType) => {
    const theirs = btf!.struct(`struct ${name}`);
    expect(theirs, `struct ${name} is missing from the object's BTF`).toBeDefined();
    expect(ours.size).toBe(theirs!.size);
    const want = flattenLayout(theirs!).map(({ path, offset, size }) => ({ path, offset, size }));
    expect(flatten(ours)).toEqual(want);
  });

  // Every constant of kvm_trace.h's enums that the decoder names (KT_STAT_*, KT_HOOK_*, KT_EV_*, …) has the
  // object's value; a constant renamed or renumbered on one side only fails here.
  it.each(['kt_event_type', 'kt_flags', 'kt_fd_kind', 'kt_fd_op', 'kt_copy_dir', 'kt_copy_hook', 'kt_stat', 'kt_exit_key_kind'])(
    'enum %s',
    (name) => {
      const e = btf!.findByName(name, 'enum');
      expect(e, `enum ${name} is missing from the object's BTF`).toBeDefined();
      const values = e!.kind === 'enum' ? e!.values : [];
      const ours = layout as unknown as Record<string, unknown>;
      const named = values.filter((v) => v.name in ours);
      expect(named.length, `the decoder names none of enum ${name}'s constants`).toBeGreaterThan(0);
      for (const v of named) expect(ours[v.name], v.name).toBe(v.value);
    },
  );
});

describe('test record helpers (test/helpers/kt-records.ts): parse/encode round trip', () => {
  const dv = (b: Uint8Array) => new DataView(b.buffer, b.byteOffset, b.byteLength);

  it('ioctl: fields, data split, variable length, rejects short records', () => {
    const rec = encodeIoctl({
      ts_ns: 2_000_000_123n,
      enter_ns: 2_000_000_000n,
      pid: 42,
      tid: 43,
      cpu: 1,
      flags: 0x10,
      fd: 7,
      cmd: 0x8090ae81,
      arg: 0x7ffd12345678n,
      ret: -22,
      run_kaddr: 0xffff888012345000n,
      vcpu_id: 3,
      exit_reason: 2,
      fd_kind: 3,
      comm: 'qemu-system-x86',
      in: new Uint8Array([1, 2, 3]),
      out: new Uint8Array([9, 8]),
    });
    expect(rec.length).toBe(IOCTL.data + 5);
    const e = parseIoctl(dv(rec), 0, rec.length)!;
    expect(e).toMatchObject({
      type: KT_EV_IOCTL,
      flags: 0x10,
      cpu: 1,
      ts_ns: 2_000_000_123,
      enter_ns: 2_000_000_000,
      pid: 42,
      tid: 43,
      fd: 7,
      cmd: 0x8090ae81,
      arg: '0x7ffd12345678',
      ret: -22,
      run_kaddr: '0xffff888012345000',
      vcpu_id: 3,
      exit_reason: 2,
      fd_kind: 3,
      comm: 'qemu-system-x86',
      in_len: 3,
      out_len: 2,
    });
    expect([...rec.subarray(e.inOffset, e.inOffset + 3)]).toEqual([1, 2, 3]);
    expect([...rec.subarray(e.outOffset, e.outOffset + 2)]).toEqual([9, 8]);
    expect(parseIoctl(dv(rec), 0, rec.length - 1)).toBeUndefined();
    expect(parseIoctl(dv(rec), 0, HDR.size)).toBeUndefined();
  });

  it.each([
    ['fd', () => encodeFd({ ts_ns: 5, pid: 1, fd: 3, op: 1, kind: 1, comm: 'vmm' }), parseFd, { fd: 3, op: 1, kind: 1, ret: 3, comm: 'vmm' }],
    ['mmap', () => encodeMmap({ ts_ns: 5, pid: 1, addr: 0x7f0000001000n, len: 12288, fd: 9, kind: 3 }), parseMmap, { addr: '0x7f0000001000', len: 12288, fd: 9, kind: 3, pgoff: 0 }],
    ['exit', () => encodeExit({ ts_ns: 5, pid: 1, exit_code: 256, comm: 'vmm' }), parseExit, { exit_code: 256, comm: 'vmm' }],
    ['copy', () => encodeCopy({ ts_ns: 5, pid: 1, uaddr: 0x1001n, len: 24, dir: 1, cmd: 0x4020ae46, fd: 4, hook: 3 }), parseCopy, { uaddr: '0x1001', len: 24, dir: 1, cmd: 0x4020ae46, fd: 4, hook: 3 }],
  ] as const)('%s record round trip and short rejection', (_name, enc, parse, want) => {
    const rec = enc();
    expect(parse(dv(rec), 0, rec.length)).toMatchObject({ ts_ns: 5, pid: 1, tid: 1, ...want });
    expect(parse(dv(rec), 0, rec.length - 1)).toBeUndefined();
  });
});
