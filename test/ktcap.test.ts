/**
 * The binary capture (`attach -w`, src/capture/ktcap/): one real run recorded both ways at once — live
 * JSONL (`-o`) and raw records (`-w`) — must decode offline (`kvm-trace decode`) to the same JSONL, record
 * for record, summary included; `report` reads either file to the same report; `-w` alone records every
 * exit. The file format on its own: lost marks where they were noticed, a file cut short, garbage, another
 * version — one clear line each, never a stack.
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, truncateSync, writeFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { bpfSkipReason } from './bpf-support.js';
import { CaptureWriter } from '../src/capture/ktcap/writer.js';
import { decodeCapture } from '../src/capture/ktcap/decode.js';
import { CaptureReader } from '../src/capture/ktcap/reader.js';
import { layoutFingerprint, type CaptureMeta } from '../src/capture/ktcap/format.js';
import { Btf } from '../src/btf/index.js';
import { encodeFd, encodeIoctl } from './helpers/kt-records.js';
import { KT_FD_OPEN, KT_FD_SYSTEM } from '../src/bpf/event-layout.js';
import { cmdOf } from './decode-helpers.js';
import type { TraceRecord } from '../src/decode/records.js';

const root = join(import.meta.dirname, '..');
const cli = join(root, 'dist', 'src', 'cli', 'main.js');
const skip = bpfSkipReason();
if (skip) console.log(`binary capture tests with a live tracer skipped: ${skip}`);
const dir = mkdtempSync(join(tmpdir(), 'kvm-trace-ktcap-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** attach with `args` until `work` has run, then SIGINT; resolves with its exit code and output. */
function attachWhile(args: string[], work: () => void): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [cli, 'attach', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    let ran = false;
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
      if (!ran && /\battached\b/.test(stderr)) {
        ran = true;
        try {
          work();
        } finally {
          child.kill('SIGINT');
        }
      }
    });
    child.on('error', reject);
    child.on('exit', (code) => (ran ? resolve({ code, stdout, stderr }) : reject(new Error(`attach exited (${code}) before attaching: ${stderr}`))));
  });
}

function guest(scenario: string, exits: number, vcpus = 1): void {
  const r = spawnSync(process.execPath, [cli, 'guest', '--scenario', scenario, '--exits', String(exits), '--vcpus', String(vcpus), '--json'], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`guest ${scenario} failed: ${r.stderr}`);
}

/** Byte offset of the first section tagged `tag` (walking the sections from the file header). */
function sectionAt(b: Buffer, tag: string): number {
  for (let at = b.readUInt32LE(12); at + 16 <= b.length; at += 16 + ((Number(b.readBigUInt64LE(at + 8)) + 7) & ~7)) {
    if (b.toString('latin1', at, at + 4) === tag) return at;
  }
  throw new Error(`no ${tag} section`);
}

const lines = (path: string): string[] => readFileSync(path, 'utf8').trimEnd().split('\n');

describe.skipIf(skip !== undefined)('binary capture of a real run', () => {
  it('decodes offline to the JSONL the live capture wrote, record for record; report reads both alike', async () => {
    const live = join(dir, 'live.jsonl');
    const cap = join(dir, 'run.ktcap');
    const r = await attachWhile(['-c', 'node', '-o', live, '-w', cap, '-q'], () => {
      guest('all', 300, 2); // every scenario: ioctls with arguments, faults, IO/MMIO/HLT exits, 2 vCPUs
      guest('pio-out', 3000);
    });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/raw records \([\d.]+ MB\) written to .*run\.ktcap/);
    const off = join(dir, 'offline.jsonl');
    const d = spawnSync(process.execPath, [cli, 'decode', cap, '-o', off, '-q'], { encoding: 'utf8' });
    expect(d.status, d.stderr).toBe(0);
    const a = lines(live);
    const b = lines(off);
    expect(a.length).toBeGreaterThan(6000);
    expect(JSON.parse(a.at(-1)!).type).toBe('summary');
    expect(b.length).toBe(a.length);
    for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) expect(`line ${i + 1}: ${b[i]}`).toBe(`line ${i + 1}: ${a[i]}`);
    // Shapes the comparison covered: arguments, flags, exits of several reasons, kvm_run joins, fds.
    const recs = a.map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(recs.some((x) => x.args !== undefined)).toBe(true);
    const reasons = new Set(recs.map((x) => (x.exit as { reason?: string } | undefined)?.reason));
    for (const reason of ['IO', 'MMIO', 'HLT']) expect(reasons.has(reason), reason).toBe(true);
    expect(new Set(recs.map((x) => x.type))).toEqual(new Set(['fd', 'ioctl', 'kvm_run', 'summary']));

    const report = (file: string): Record<string, unknown> => {
      const rr = spawnSync(process.execPath, [cli, 'report', file, '--format', 'json'], { encoding: 'utf8' });
      expect(rr.status, rr.stderr).toBe(0);
      const m = JSON.parse(rr.stdout) as Record<string, unknown>;
      delete m.source; // names the file it read
      return m;
    };
    expect(report(cap)).toEqual(report(live));
  });

  it('-w alone records every exit without decoding live; --json says where the records went', async () => {
    const cap = join(dir, 'only.ktcap');
    const r = await attachWhile(['-c', 'node', '-w', cap, '--json'], () => guest('pio-out', 4000));
    expect(r.code, r.stderr).toBe(0);
    const s = JSON.parse(r.stdout.trim().split('\n').at(-1)!) as { events: number; lost: number; capture_file: { records: number; dropped: number } };
    expect(s.lost).toBe(0);
    expect(s.capture_file.dropped).toBe(0);
    expect(s.events).toBe(s.capture_file.records);
    const recs: TraceRecord[] = [];
    const dec = await decodeCapture(cap, { sinks: [{ write: (x) => recs.push(x), close: async () => {} }] });
    expect(dec.complete).toBe(true);
    expect(dec.records).toBe(s.capture_file.records);
    const runs = recs.filter((x) => x.type === 'ioctl' && x.name === 'KVM_RUN');
    expect(runs.length).toBeGreaterThanOrEqual(4001); // the loop's exits and the final HLT
    expect(dec.summary.ioctls.KVM_RUN.count).toBe(runs.length);
  });

  it.each([
    [['-w', '/nonexistent/dir/x.ktcap', '--duration', '1'], /cannot write \/nonexistent/],
    [['-w', join(dir, 'x.ktcap'), '--aggregate'], /--write records every raw record; --aggregate records none/],
  ])('bad input %j: one line, non-zero exit', (args, message) => {
    const r = spawnSync(process.execPath, [cli, 'attach', ...args], { encoding: 'utf8' });
    expect(r.status).not.toBe(0);
    expect(r.stderr).toMatch(message);
    expect(r.stderr).not.toMatch(/\n\s+at /);
  });
});

describe('binary capture file', () => {
  const meta = (over: Partial<CaptureMeta> = {}): CaptureMeta => ({
    tool: 'kvm-trace', version: 'test', created: new Date(0).toISOString(), kernel: 'test', clock: { monotonic_ns: '1', realtime_ns: '2' },
    strategy: 'tracepoint', programs: [], options: { pids: [], comm: null, lean: false }, line_size: 64, layout: layoutFingerprint(), ...over,
  });
  const raw = (b: Uint8Array): DataView => new DataView(b.buffer, b.byteOffset, b.byteLength);

  /** A capture of a few hand-made records with lost marks between them. */
  async function write(path: string, over: Partial<CaptureMeta> = {}): Promise<void> {
    const w = await CaptureWriter.open(path, { chunkBytes: 512 });
    w.begin(meta(over), { vmlinux: Btf.vmlinux().bytes }, [{ pid: 7, fds: [{ fd: 3, target: '/dev/kvm' }], maps: '' }]);
    w.lost(2);
    for (let i = 0; i < 40; i++) {
      const rec = encodeIoctl({ ts_ns: 1000 + i, enter_ns: 900 + i, pid: 7, fd: 3, cmd: cmdOf('KVM_CHECK_EXTENSION'), arg: i, ret: 1, fd_kind: KT_FD_SYSTEM, comm: 'vmm' });
      w.add(raw(rec), 0, rec.length);
      if (i === 20) w.lost(5);
    }
    const fd = encodeFd({ ts_ns: 5000, pid: 7, fd: 9, op: KT_FD_OPEN, kind: KT_FD_SYSTEM });
    w.add(raw(fd), 0, fd.length);
    await w.end({ strategy: 'tracepoint', lost: 7, duration_s: 1.5, ring_rejected: 0, no_enter: 0, state_unavailable: 0, attach_ms: 12 });
  }

  const decodeAll = async (path: string): Promise<{ recs: TraceRecord[]; complete: boolean }> => {
    const recs: TraceRecord[] = [];
    const d = await decodeCapture(path, { sinks: [{ write: (r) => recs.push(r), close: async () => {} }] });
    return { recs, complete: d.complete };
  };

  it('keeps records and lost marks in order, the seeds and the end facts', async () => {
    const p = join(dir, 'unit.ktcap');
    await write(p);
    const { recs, complete } = await decodeAll(p);
    expect(complete).toBe(true);
    const kinds = recs.map((r) => (r.type === 'lost' ? `lost${r.count}` : r.type));
    expect(kinds[0]).toBe('lost2');
    expect(kinds.indexOf('lost5')).toBe(22); // after the 21st ioctl record
    const first = recs[1] as { fd_kind: string };
    expect(first.fd_kind).toBe('system'); // fd 3 known from the seed
    const summary = recs.at(-1) as { type: string; lost: number; duration_s: number; attach_ms: number };
    expect(summary).toMatchObject({ type: 'summary', lost: 7, duration_s: 1.5, attach_ms: 12 });
  });

  it('frames hold each record byte for byte with zeroed padding, from aligned and unaligned sources alike', async () => {
    const p = join(dir, 'frames.ktcap');
    const w = await CaptureWriter.open(p, { chunkBytes: 256 });
    w.begin(meta(), { vmlinux: Btf.vmlinux().bytes }, []);
    // Records of every length 1..40 at source offsets 0..3, with 0xee after each (must not reach the file).
    const want: number[][] = [];
    for (let len = 1; len <= 40; len++) {
      for (const shift of [0, 1, 2, 3]) {
        const src = new Uint8Array(shift + len + 8).fill(0xee);
        for (let k = 0; k < len; k++) src[shift + k] = (len * 7 + k + shift) & 0xff;
        w.add(raw(src), shift, len);
        want.push([...src.subarray(shift, shift + len)]);
      }
    }
    await w.end({ strategy: 'tracepoint', lost: 0, duration_s: 0, ring_rejected: 0, no_enter: 0, state_unavailable: 0, attach_ms: null });
    const r = CaptureReader.open(p);
    const got: number[][] = [];
    const padding: number[] = [];
    try {
      r.forEachFrame((v, off, len) => {
        got.push([...new Uint8Array(v.buffer, v.byteOffset + off, len)]);
        for (let p = off + len; p < off - 8 + ((8 + len + 7) & ~7); p++) padding.push(v.getUint8(p));
      }, () => {});
    } finally {
      r.close();
    }
    expect(got).toEqual(want);
    expect(padding.length).toBeGreaterThan(0);
    expect(padding.filter((b) => b !== 0)).toEqual([]); // nothing past a record was copied into its padding
  });

  it('a file cut short decodes up to its last whole section, and says it has no end', async () => {
    const p = join(dir, 'cut.ktcap');
    await write(p);
    truncateSync(p, statSync(p).size - 700);
    const { recs, complete } = await decodeAll(p);
    expect(complete).toBe(false);
    expect(recs.filter((r) => r.type === 'ioctl').length).toBeGreaterThan(0);
    expect(recs.filter((r) => r.type === 'ioctl').length).toBeLessThan(40);
    expect((recs.at(-1) as { error?: string }).error).toMatch(/no end/);
  });

  it.each([
    ['garbage', (p: string) => writeFileSync(p, 'not a capture at all, just text\n'), /not a kvm-trace binary capture/],
    ['a newer version', async (p: string) => { await write(p); const b = readFileSync(p); b.writeUInt32LE(9, 8); writeFileSync(p, b); }, /format version 9; this kvm-trace reads version 1/],
    ['another record layout', async (p: string) => write(p, { layout: '{}' }), /another record layout/],
    ['a damaged frame', async (p: string) => { await write(p); const b = readFileSync(p); const at = sectionAt(b, 'RECS'); b.writeUInt32LE(1 << 20, at + 16); writeFileSync(p, b); }, /damaged capture: a frame of 1048576 bytes/],
  ])('%s: decode fails with one line', async (_what, make, message) => {
    const p = join(dir, 'bad.ktcap');
    await make(p);
    await expect(decodeAll(p)).rejects.toThrow(message);
    const r = spawnSync(process.execPath, [cli, 'decode', p], { encoding: 'utf8' });
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(message);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
  });

  it("keeps KVM's module BTF (split over vmlinux) when the kernel has one, and decodes with both", async () => {
    // A one-type split BTF continuing vmlinux's ids and strings, as /sys/kernel/btf/kvm does on module kernels.
    const vmlinux = Btf.vmlinux();
    const strLen = new DataView(vmlinux.bytes.buffer, vmlinux.bytes.byteOffset).getUint32(20, true);
    const name = Buffer.from('ktcap_split_probe\0', 'latin1');
    const split = Buffer.alloc(24 + 12 + name.length);
    split.writeUInt16LE(0xeb9f, 0);
    split.writeUInt8(1, 2);
    split.writeUInt32LE(24, 4); // hdr_len
    split.writeUInt32LE(0, 8); // type_off
    split.writeUInt32LE(12, 12); // type_len
    split.writeUInt32LE(12, 16); // str_off
    split.writeUInt32LE(name.length, 20); // str_len
    split.writeUInt32LE(strLen, 24); // name_off: the split's own first string
    split.writeUInt32LE(8 << 24, 28); // typedef
    split.writeUInt32LE(1, 32); // of type 1
    name.copy(split, 36);
    const p = join(dir, 'split.ktcap');
    const w = await CaptureWriter.open(p);
    w.begin(meta(), { vmlinux: vmlinux.bytes, kvm: split }, []);
    await w.end({ strategy: 'tracepoint', lost: 0, duration_s: 0, ring_rejected: 0, no_enter: 0, state_unavailable: 0, attach_ms: 1 });
    const r = CaptureReader.open(p);
    try {
      expect(Buffer.from(r.kvmBtf!)).toEqual(split);
      expect(Btf.fromRaw(r.kvmBtf!, Btf.fromRaw(r.btf)).findByName('ktcap_split_probe')?.id).toBe(vmlinux.count);
    } finally {
      r.close();
    }
    expect((await decodeAll(p)).complete).toBe(true);
  });

  it('reads the head without the records', async () => {
    await write(join(dir, 'head.ktcap'));
    const r = CaptureReader.open(join(dir, 'head.ktcap'));
    try {
      expect(r.meta.version).toBe('test');
      expect(r.seeds).toEqual([{ pid: 7, fds: [{ fd: 3, target: '/dev/kvm' }], maps: '' }]);
      expect(r.btf.length).toBe(Btf.vmlinux().bytes.length);
    } finally {
      r.close();
    }
  });
});
