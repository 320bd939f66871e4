/**
 * JSON text of a record, for the JSONL sink. The overwhelmingly common record — an ioctl record with only
 * the contract's fixed members plus an `exit` (every KVM_RUN) — is built with one template string, about
 * 2–3× faster than JSON.stringify on this host; anything else goes through JSON.stringify. Both give the
 * same text for records the decoder builds (test/decode-output.test.ts checks this): fixed members in the
 * contract's order, strings escaped by JSON.stringify, numbers as JSON numbers.
 */
import type { ExitInfo, IoctlRecord, TraceRecord } from './records.js';

const q = JSON.stringify;
/** Members of an ioctl record that are always present. */
const FIXED_IOCTL_KEYS = 18;

function ioJson(e: ExitInfo): string | undefined {
  const n = Object.keys(e).length;
  if (n === 7) {
    return `{"reason":"IO","code":${e.code},"direction":${q(e.direction)},"size":${e.size},"port":${e.port},"count":${e.count},"data_offset":${e.data_offset}}`;
  }
  if (n === 8 && e.data !== undefined) {
    return `{"reason":"IO","code":${e.code},"direction":${q(e.direction)},"size":${e.size},"port":${e.port},"count":${e.count},"data_offset":${e.data_offset},"data":${q(e.data)}}`;
  }
  return undefined;
}

function exitJson(e: ExitInfo): string {
  if (e.reason === 'IO') {
    const s = ioJson(e);
    if (s !== undefined) return s;
  } else if (Object.keys(e).length === 2) {
    return `{"reason":${q(e.reason)},"code":${e.code}}`;
  }
  return q(e);
}

function ioctlJson(r: IoctlRecord): string {
  let tail = '';
  let n = FIXED_IOCTL_KEYS;
  if (r.exit !== undefined) {
    tail = `,"exit":${exitJson(r.exit)}`;
    n++;
  }
  // Anything beyond the fixed members and exit (args, no_enter, flags, …): the general path.
  if (Object.keys(r).length !== n) return q(r);
  return (
    `{"type":"ioctl","ts_ns":${r.ts_ns},"enter_ns":${r.enter_ns},"pid":${r.pid},"tid":${r.tid},"comm":${q(r.comm)},` +
    `"fd":${r.fd},"fd_kind":${q(r.fd_kind)},"vm":${r.vm},"vcpu":${r.vcpu},"cmd":${q(r.cmd)},"name":${q(r.name)},` +
    `"size":${r.size},"dir":${q(r.dir)},"arg":${q(r.arg)},"ret":${r.ret},"errno":${r.errno === null ? 'null' : q(r.errno)},` +
    `"latency_ns":${r.latency_ns}${tail}}`
  );
}

/** The record as one line of JSON (without the newline). */
export function recordJson(r: TraceRecord): string {
  return r.type === 'ioctl' ? ioctlJson(r) : q(r);
}
