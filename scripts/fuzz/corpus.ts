/**
 * The fuzzer's seed records. `recordCorpus` captures them for real: kvm-trace's BPF programs attached to
 * this process while the reference guest runs every scenario on two vCPUs, each record copied out of the
 * ring as the kernel wrote it (ioctl records with their arguments, flexible arrays and kvm_run snapshots,
 * fd and mmap records). `syntheticCorpus` adds what this machine's kernel does not produce in such a run
 * (copy records, the fd-lifecycle records of dup/close_range/execve/fork, thread and process exits),
 * built as the BPF side builds them; it is also the whole corpus where BPF is not available.
 */
import { KvmTracer } from '../../src/bpf/tracer.js';
import {
  KT_COPY_FROM_USER,
  KT_COPY_TO_USER,
  KT_FD_CLOSE,
  KT_FD_CLOSE_RANGE,
  KT_FD_DUP,
  KT_FD_EXEC_CLOSE,
  KT_FD_OPEN,
  KT_FD_SYSTEM,
  KT_FD_VCPU,
  KT_FD_VM,
  KT_F_RUN,
  KT_RUN_SNAP,
} from '../../src/bpf/event-layout.js';
import { runGuest } from '../../src/guest/index.js';
import { ioctlByName } from '../../src/kvm/abi/ioctl-table.js';
import { RingBufferConsumer } from '../../src/ringbuf/consumer.js';
import { encodeCopy, encodeExit, encodeFd, encodeFork, encodeIoctl, encodeMmap } from '../lib/kt-encode.js';

/** Records of a real capture of the reference guest (all scenarios, 2 vCPUs); throws where BPF or KVM is missing. */
export async function recordCorpus(exits = 50): Promise<Uint8Array[]> {
  const out: Uint8Array[] = [];
  const tracer = KvmTracer.open({ pids: [process.pid] });
  let ring: RingBufferConsumer | undefined;
  try {
    ring = new RingBufferConsumer(tracer.ringMapFd, tracer.ringBytes, {
      onRecord: (dv, off, len) => void out.push(new Uint8Array(dv.buffer, dv.byteOffset + off, len).slice()),
      intervalMs: 10,
    });
    await runGuest({ scenario: 'all', vcpus: 2, exits });
    ring.flush();
  } finally {
    ring?.close();
    tracer.close();
  }
  if (out.length === 0) throw new Error('the capture of the reference guest produced no records');
  return out;
}

/** A VMM's life as the BPF side would record it, with the record types a real run here lacks. */
export function syntheticCorpus(pid = 4242): Uint8Array[] {
  let t = 1_000_000;
  const ts = (): number => (t += 1000);
  const cmd = (name: string): number => ioctlByName(name).cmd;
  const io = (init: Omit<Parameters<typeof encodeIoctl>[0], 'ts_ns' | 'pid'>) => encodeIoctl({ enter_ns: t, pid, ...init, ts_ns: ts() });
  const fdRec = (fd: number, op: number, kind: number, ret = 0) => encodeFd({ ts_ns: ts(), pid, fd, op, kind, ret, comm: 'vmm' });
  const msrs = new Uint8Array(8 + 3 * 16);
  new DataView(msrs.buffer).setUint32(0, 3, true); // kvm_msrs.nmsrs = 3
  return [
    fdRec(3, KT_FD_OPEN, KT_FD_SYSTEM, 3),
    io({ fd: 3, cmd: cmd('KVM_CREATE_VM'), ret: 4 }),
    io({ fd: 4, cmd: cmd('KVM_CREATE_VCPU'), arg: 0, ret: 5 }),
    encodeMmap({ ts_ns: ts(), pid, fd: 5, kind: KT_FD_VCPU, addr: 0x7f0000010000n, len: 12288 }),
    io({ fd: 5, cmd: cmd('KVM_SET_MSRS'), arg: 0x7ffd0001n, in: msrs, ret: 3 }),
    encodeCopy({ ts_ns: ts(), pid, uaddr: 0x7ffd0001n, len: 8, dir: KT_COPY_FROM_USER, cmd: cmd('KVM_GET_REGS'), fd: 5 }),
    io({ fd: 5, cmd: cmd('KVM_GET_REGS'), arg: 0x7ffd0001n, out: new Uint8Array(144), ret: 0 }),
    encodeCopy({ ts_ns: ts(), pid, uaddr: 0x7ffd0040n, len: 144, dir: KT_COPY_TO_USER, cmd: cmd('KVM_GET_REGS'), fd: 5 }),
    io({ fd: 5, tid: pid + 1, cmd: cmd('KVM_RUN'), flags: KT_F_RUN, vcpu_id: 0, exit_reason: 2, run_kaddr: 0xffff888001234000n, out: new Uint8Array(KT_RUN_SNAP) }),
    io({ fd: 5, tid: pid + 1, cmd: cmd('KVM_RUN'), flags: KT_F_RUN, vcpu_id: 0, exit_reason: 6, run_kaddr: 0xffff888001234000n, out: new Uint8Array(KT_RUN_SNAP) }),
    fdRec(5, KT_FD_DUP, KT_FD_VCPU, 9),
    fdRec(20, KT_FD_DUP, 0, 9),
    encodeFork({ ts_ns: ts(), pid, child_pid: pid + 100 }),
    fdRec(4, KT_FD_CLOSE_RANGE, KT_FD_VM),
    fdRec(3, KT_FD_EXEC_CLOSE, KT_FD_SYSTEM),
    encodeExit({ ts_ns: ts(), pid, tid: pid + 1, thread: true }),
    fdRec(5, KT_FD_CLOSE, KT_FD_VCPU),
    encodeExit({ ts_ns: ts(), pid: pid + 100 }),
    encodeExit({ ts_ns: ts(), pid }),
  ];
}
