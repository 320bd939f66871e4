/**
 * BPF objects by id. The ids a process holds come from its /proc/PID/fdinfo (prog_id, map_id, link_id);
 * which ids still exist comes from bpftool (an outside view: it shares no code with kvm-trace). The
 * checklist notes the ids of a running `kvm-trace attach` and looks for exactly those after it stopped,
 * so objects of anything else on the machine are never counted as ours.
 */
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';

export type BpfKind = 'prog' | 'map' | 'link';
export type BpfIdSet = Record<BpfKind, number[]>;

const KINDS: BpfKind[] = ['prog', 'map', 'link'];

/** Every id of each kind (bpftool -j KIND show). Throws when bpftool is missing or fails. */
export function listBpfIds(): BpfIdSet {
  const out = {} as BpfIdSet;
  for (const kind of KINDS) {
    const json = execFileSync('bpftool', ['-j', kind, 'show'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    const items = JSON.parse(json || '[]') as Array<{ id: number }>;
    out[kind] = items.map((i) => i.id);
  }
  return out;
}

/** The BPF objects process `pid` holds a file descriptor of. */
export function processBpfIds(pid: number): BpfIdSet {
  const out: BpfIdSet = { prog: [], map: [], link: [] };
  let fds: string[];
  try {
    fds = readdirSync(`/proc/${pid}/fdinfo`);
  } catch {
    return out; // gone
  }
  for (const fd of fds) {
    let info: string;
    try {
      info = readFileSync(`/proc/${pid}/fdinfo/${fd}`, 'utf8');
    } catch {
      continue; // closed meanwhile
    }
    for (const kind of KINDS) {
      const m = new RegExp(`^${kind}_id:\\s*(\\d+)`, 'm').exec(info);
      if (m && !out[kind].includes(Number(m[1]))) out[kind].push(Number(m[1]));
    }
  }
  return out;
}

/** Which of `ids` still exist. */
export function stillThere(ids: BpfIdSet): BpfIdSet {
  const now = listBpfIds();
  const out = {} as BpfIdSet;
  for (const kind of KINDS) {
    const live = new Set(now[kind]);
    out[kind] = ids[kind].filter((id) => live.has(id));
  }
  return out;
}

/**
 * Which of `ids` still exist once the kernel had time to free them: a program's maps are released after an
 * RCU grace period, later than the process's exit (longer under emulation), so poll up to `waitMs`.
 */
export async function remainingAfter(ids: BpfIdSet, waitMs: number): Promise<BpfIdSet> {
  const until = performance.now() + waitMs;
  let left = stillThere(ids);
  while (countIds(left) > 0 && performance.now() < until) {
    await new Promise((r) => setTimeout(r, 200));
    left = stillThere(ids);
  }
  return left;
}

export function countIds(s: BpfIdSet): number {
  return s.prog.length + s.map.length + s.link.length;
}

export function describeIds(s: BpfIdSet): string {
  return KINDS.filter((k) => s[k].length)
    .map((k) => `${k} ${s[k].join(',')}`)
    .join('; ');
}
