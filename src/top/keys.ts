/**
 * `top`'s interactive state and what each key does to it, pure: (state, key, rows on screen) → (state,
 * action). The screen driver feeds it raw stdin chunks; tests feed it strings.
 *
 *   q, Ctrl-C   quit                    space   pause / resume         r   reset totals
 *   s / S       next / previous sort    i       invert the order       z   hide rows without activity
 *   p c v e     filter by pid, comm, vCPU, exit reason (type, Enter; empty clears it)   x   clear filters
 *   ↑ ↓ (k j)   select a row            Enter   drill into its VM      Esc, u, Backspace   back up
 *   h, ?        help
 */
import type { TopRow } from './model.js';

export type SortKey = 'exits' | 'ioctls' | 'errors' | 'run_p99' | 'handling_p99' | 'pid' | 'vcpu';
export const SORT_KEYS: readonly SortKey[] = ['exits', 'ioctls', 'errors', 'run_p99', 'handling_p99', 'pid', 'vcpu'];

export interface Filter {
  pid?: number;
  /** Substring of the process name. */
  comm?: string;
  vcpu?: number;
  /** Substring of an exit reason name, case-insensitive. */
  reason?: string;
}

export type PromptField = keyof Filter;

export interface UiState {
  sort: SortKey;
  desc: boolean;
  filter: Filter;
  /** Group key ("pid/vm") of the VM (or process) drilled into, or null. */
  drill: string | null;
  /** Index of the selected row among the rows on screen. */
  selected: number;
  paused: boolean;
  hideZero: boolean;
  help: boolean;
  prompt: { field: PromptField; text: string } | null;
  /** One line shown until the next key (a rejected input, say). */
  message: string | null;
}

export type KeyAction = 'none' | 'quit' | 'reset';

export function initialUi(over: Partial<UiState> = {}): UiState {
  return { sort: 'exits', desc: true, filter: {}, drill: null, selected: 0, paused: false, hideZero: false, help: false, prompt: null, message: null, ...over };
}

/** The group (process or VM) a row belongs to: what drilling selects. */
export const groupOf = (r: Pick<TopRow, 'pid' | 'vm'>): string => `${r.pid ?? '*'}/${r.vm ?? '*'}`;

const PROMPTS: Record<string, PromptField> = { p: 'pid', c: 'comm', v: 'vcpu', e: 'reason' };
const UP = new Set(['\x1b[A', '\x1bOA', 'k']);
const DOWN = new Set(['\x1b[B', '\x1bOB', 'j']);
const BACK = new Set(['\x1b', 'u', '\x7f', '\b']);
const ENTER = new Set(['\r', '\n']);

function applyPrompt(s: UiState, field: PromptField, text: string): UiState {
  const t = text.trim();
  const filter = { ...s.filter };
  if (t === '') {
    delete filter[field];
    return { ...s, filter, prompt: null, selected: 0 };
  }
  if (field === 'pid' || field === 'vcpu') {
    if (!/^\d+$/.test(t)) return { ...s, prompt: null, message: `${field} must be a number, got '${t}'` };
    filter[field] = Number(t);
  } else {
    filter[field] = t;
  }
  return { ...s, filter, prompt: null, selected: 0 };
}

function promptKey(s: UiState, key: string): { state: UiState; action: KeyAction } {
  const p = s.prompt!;
  if (key === '\x03') return { state: s, action: 'quit' };
  if (ENTER.has(key)) return { state: applyPrompt(s, p.field, p.text), action: 'none' };
  if (key === '\x1b') return { state: { ...s, prompt: null }, action: 'none' };
  if (key === '\x7f' || key === '\b') return { state: { ...s, prompt: { ...p, text: p.text.slice(0, -1) } }, action: 'none' };
  // Printable input only (a pasted chunk may hold several characters); escape sequences are ignored.
  const printable = key.startsWith('\x1b') ? '' : key.replace(/[\x00-\x1f\x7f]/g, '');
  return { state: { ...s, prompt: { ...p, text: (p.text + printable).slice(0, 32) } }, action: 'none' };
}

/** Apply one key (or one escape sequence) to the state; `shown` is the rows on screen, top to bottom. */
export function handleKey(s: UiState, key: string, shown: readonly TopRow[] = []): { state: UiState; action: KeyAction } {
  if (s.prompt) return promptKey(s, key);
  const st: UiState = { ...s, message: null };
  const ok = (state: UiState, action: KeyAction = 'none') => ({ state, action });
  if (key === 'q' || key === '\x03') return ok(st, 'quit');
  if (st.help) return ok({ ...st, help: false }); // any other key closes the help
  if (key === 'h' || key === '?') return ok({ ...st, help: true });
  if (key === ' ') return ok({ ...st, paused: !st.paused });
  if (key === 'r') return ok(st, 'reset');
  if (key === 's' || key === 'S') {
    const i = SORT_KEYS.indexOf(st.sort);
    const n = SORT_KEYS.length;
    const sort = SORT_KEYS[(i + (key === 's' ? 1 : n - 1)) % n];
    return ok({ ...st, sort, desc: sort !== 'pid' && sort !== 'vcpu' });
  }
  if (key === 'i') return ok({ ...st, desc: !st.desc });
  if (key === 'z') return ok({ ...st, hideZero: !st.hideZero });
  if (key === 'x') return ok({ ...st, filter: {}, drill: null, selected: 0 });
  if (PROMPTS[key]) {
    const field = PROMPTS[key];
    const cur = st.filter[field];
    return ok({ ...st, prompt: { field, text: cur === undefined ? '' : String(cur) } });
  }
  if (UP.has(key)) return ok({ ...st, selected: Math.max(0, st.selected - 1) });
  if (DOWN.has(key)) return ok({ ...st, selected: Math.min(Math.max(0, shown.length - 1), st.selected + 1) });
  if (ENTER.has(key)) {
    const row = shown[Math.min(st.selected, shown.length - 1)];
    if (!row || st.drill !== null) return ok(st);
    return ok({ ...st, drill: groupOf(row), selected: 0 });
  }
  if (BACK.has(key)) return ok({ ...st, drill: null, selected: 0 });
  return ok(st);
}

/**
 * Split a raw stdin chunk into keys: escape sequences (ESC [ … final byte, ESC O x) stay whole, everything
 * else is one character each.
 */
export function splitKeys(chunk: string): string[] {
  const out: string[] = [];
  for (let i = 0; i < chunk.length; ) {
    if (chunk[i] === '\x1b' && chunk[i + 1] === '[') {
      let j = i + 2;
      while (j < chunk.length && !/[@-~]/.test(chunk[j])) j++;
      out.push(chunk.slice(i, j + 1));
      i = j + 1;
    } else if (chunk[i] === '\x1b' && chunk[i + 1] === 'O' && i + 2 < chunk.length) {
      out.push(chunk.slice(i, i + 3));
      i += 3;
    } else {
      out.push(chunk[i]);
      i++;
    }
  }
  return out;
}
