/**
 * The shape `report` needs of each record it reads from a capture file: the members the report model
 * uses, with their JSON types (src/decode/records.ts is the contract). A record that is JSON but not of
 * this shape — a member missing, of another type, an exit without a reason, a flag without a length — is
 * rejected with one line naming file:line (jsonl.ts), instead of reaching the model and failing there.
 * Members the model does not read are not checked; unknown members are allowed (newer captures).
 */

type Kind = 'number' | 'string' | 'boolean' | 'object' | 'array';
/** A member's kind; `?` = may be absent; `|null` = may be null. */
type Spec = `${Kind}${'' | '|null'}${'' | '?'}`;
type Shape = Record<string, Spec>;

const FLAG: Shape = { dir: 'string', addr: 'string', len: 'number', misaligned: 'boolean', cacheline_cross: 'boolean', lines: 'number', min_lines: 'number', source: 'string', what: 'string?', align: 'number?' };
const KVM_RUN: Shape = { pid: 'number', vcpu: 'number', fd: 'number?', kernel_addr: 'string|null?', user_addr: 'string|null?', mmap_size: 'number|null?' };

const SHAPES: Record<string, Shape> = {
  ioctl: {
    name: 'string',
    pid: 'number',
    tid: 'number',
    ret: 'number',
    latency_ns: 'number',
    ts_ns: 'number',
    enter_ns: 'number?',
    comm: 'string?',
    fd: 'number?',
    fd_kind: 'string?',
    vm: 'number|null?',
    vcpu: 'number|null?',
    cmd: 'string?',
    arg: 'string?',
    errno: 'string|null?',
    args: 'object?',
    args_in: 'object?',
    exit: 'object?',
    flags: 'array?',
    explain: 'string?',
  },
  copy: { addr: 'string', len: 'number', tid: 'number', pid: 'number', ts_ns: 'number', dir: 'string', cmd: 'string?', name: 'string?', fd: 'number?' },
  kvm_run: KVM_RUN,
  fd: { op: 'string', pid: 'number', fd: 'number', fd_kind: 'string', ts_ns: 'number?', tid: 'number?', vm: 'number|null?', vcpu: 'number|null?' },
  lost: { count: 'number' },
  summary: { strategy: 'string?', duration_s: 'number?', events: 'number?', unknown_ioctls: 'number?', lost: 'number?', fds: 'object?', kvm_run: 'array?' },
};

function kindOf(v: unknown): Kind | 'null' | 'other' {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'array';
  const t = typeof v;
  return t === 'number' || t === 'string' || t === 'boolean' || t === 'object' ? t : 'other';
}

/** Why `o` does not have `shape` (the first member that is wrong), or undefined. */
function mismatch(o: Record<string, unknown>, shape: Shape, where: string): string | undefined {
  for (const [name, spec] of Object.entries(shape)) {
    const optional = spec.endsWith('?');
    const nullable = spec.includes('|null');
    const kind = spec.replace('?', '').replace('|null', '') as Kind;
    const v = o[name];
    if (v === undefined) {
      if (optional) continue;
      return `${where} without "${name}"`;
    }
    const k = kindOf(v);
    if (k === kind || (k === 'null' && nullable)) continue;
    return `${where} with "${name}" of type ${k}, expected ${kind}${nullable ? ' or null' : ''}`;
  }
  return undefined;
}

/**
 * Why record `r` (its "type" already a known string) is not of the shape the report reads, or undefined
 * when it is. Checks nested members the model walks: an ioctl's exit and flags, a summary's fds and kvm_run.
 */
export function shapeProblem(type: string, r: Record<string, unknown>): string | undefined {
  const shape = SHAPES[type];
  if (!shape) return undefined;
  const top = mismatch(r, shape, `${type} record`);
  if (top) return top;
  if (type === 'ioctl') {
    if (r.exit !== undefined) {
      const bad = mismatch(r.exit as Record<string, unknown>, { reason: 'string', code: 'number?' }, 'ioctl record: exit');
      if (bad) return bad;
    }
    for (const [i, f] of ((r.flags as unknown[] | undefined) ?? []).entries()) {
      if (kindOf(f) !== 'object') return `ioctl record: flags[${i}] is not an object`;
      const bad = mismatch(f as Record<string, unknown>, FLAG, `ioctl record: flags[${i}]`);
      if (bad) return bad;
    }
  }
  if (type === 'summary') {
    if (r.fds !== undefined) {
      const bad = mismatch(r.fds as Record<string, unknown>, { opened: 'number', closed: 'number', leaked: 'number' }, 'summary record: fds');
      if (bad) return bad;
    }
    for (const [i, k] of ((r.kvm_run as unknown[] | undefined) ?? []).entries()) {
      if (kindOf(k) !== 'object') return `summary record: kvm_run[${i}] is not an object`;
      const bad = mismatch(k as Record<string, unknown>, KVM_RUN, `summary record: kvm_run[${i}]`);
      if (bad) return bad;
    }
  }
  return undefined;
}
