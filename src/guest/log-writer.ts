/**
 * Writes the ground-truth JSONL: the records of every thread merged in time order (ioctls by t0_ns, fd
 * events by t_ns; kvm_run and memory records stay right after what preceded them on their thread), then
 * the tail (per-vCPU exit counts, summary). KVM_RUN columns are formatted straight from the typed arrays.
 */
import { closeSync, openSync, writeSync } from 'node:fs';
import { errnoName } from '../ffi/errors.js';
import { cmdHex } from '../kvm/abi/ioc.js';
import { ioctlByName } from '../kvm/abi/ioctl-table.js';
import type { RecordedLog, RunColumns } from './recorder.js';
import type { GtRecord } from './records.js';

const KVM_RUN = ioctlByName('KVM_RUN');
const RUN_CMD = cmdHex(KVM_RUN.cmd);

interface Source {
  n: number;
  time(i: number): number;
  line(i: number): string;
}

function recordSource(records: GtRecord[]): Source {
  const times = new Float64Array(records.length);
  let t = 0;
  records.forEach((r, i) => {
    if (r.type === 'ioctl') t = r.t0_ns;
    else if (r.type === 'fd') t = r.t_ns;
    times[i] = t;
  });
  return { n: records.length, time: (i) => times[i], line: (i) => JSON.stringify(records[i]) };
}

function runSource(r: RunColumns): Source {
  return {
    n: r.n,
    time: (i) => Number(r.t0[i]),
    line: (i) => {
      const ret = r.ret[i];
      const errno = ret < 0 ? `"${errnoName(-ret)}"` : 'null';
      const vcpu = r.vcpu[i] < 0 ? 'null' : String(r.vcpu[i]);
      return (
        `{"type":"ioctl","t0_ns":${r.t0[i]},"t1_ns":${r.t1[i]},"tid":${r.tid},"fd":${r.fd[i]},"fd_kind":"vcpu",` +
        `"cmd":"${RUN_CMD}","name":"KVM_RUN","arg":"0x0","size":${KVM_RUN.size},"ret":${ret},"errno":${errno},"vcpu":${vcpu}}`
      );
    },
  };
}

/** Write `logs` (one per thread) merged by time, then `tail`, to `path` (truncating it). */
export function writeGroundTruth(path: string, logs: RecordedLog[], tail: GtRecord[]): void {
  const sources = logs.flatMap((l) => [recordSource(l.records), runSource(l.runs)]).filter((s) => s.n > 0);
  const pos = sources.map(() => 0);
  const fd = openSync(path, 'w');
  try {
    let chunk = '';
    const emit = (line: string): void => {
      chunk += line + '\n';
      if (chunk.length > 1 << 20) {
        writeSync(fd, chunk);
        chunk = '';
      }
    };
    for (;;) {
      let best = -1;
      for (let s = 0; s < sources.length; s++) {
        if (pos[s] < sources[s].n && (best < 0 || sources[s].time(pos[s]) < sources[best].time(pos[best]))) best = s;
      }
      if (best < 0) break;
      emit(sources[best].line(pos[best]++));
    }
    for (const r of tail) emit(JSON.stringify(r));
    if (chunk) writeSync(fd, chunk);
  } finally {
    closeSync(fd);
  }
}
