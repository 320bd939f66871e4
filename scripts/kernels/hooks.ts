/**
 * Which BPF programs ("hooks") kvm-trace attached and why the others were dropped, read from whatever the
 * tool reports: a `hooks` object or array in its JSON (per-hook strategy), else its stderr lines
 * ("strategy X: why", "NAME could not attach: why", "attached: N programs"). Tolerant on purpose: the
 * checklist must read both the whole-strategy output of older builds and the per-hook one.
 */

export interface HookState {
  attached: boolean;
  reason?: string;
}

export type Hooks = Record<string, HookState>;

/** Programs that observe the kernel's user copies (copy_{from,to}_user, memdup_user, …). */
export const COPY_HOOK = /copy|memdup/i;

function str(v: unknown): string | undefined {
  return typeof v === 'string' && v !== '' ? v : undefined;
}

function hookState(v: unknown): HookState | undefined {
  if (typeof v === 'boolean') return { attached: v };
  if (typeof v === 'string') return /^(attached|ok|yes)$/i.test(v) ? { attached: true } : { attached: false, reason: v };
  if (!v || typeof v !== 'object') return undefined;
  const o = v as Record<string, unknown>;
  const flag = o.attached ?? o.ok ?? (typeof o.status === 'string' ? /^(attached|ok)$/i.test(o.status) : undefined);
  if (typeof flag !== 'boolean') return undefined;
  const reason = str(o.reason) ?? str(o.error) ?? str(o.detail) ?? str(o.why) ?? (flag ? undefined : str(o.status));
  return reason ? { attached: flag, reason } : { attached: flag };
}

/** A `hooks` value from the tool's JSON: {name: state} or [{name|program|hook, …state}]. */
export function normalizeHooks(raw: unknown): Hooks | undefined {
  if (!raw || typeof raw !== 'object') return undefined;
  const out: Hooks = {};
  if (Array.isArray(raw)) {
    for (const item of raw) {
      const o = item as Record<string, unknown>;
      const name = str(o?.name) ?? str(o?.program) ?? str(o?.hook);
      const s = hookState(o);
      if (name && s) out[name] = s;
    }
  } else {
    for (const [name, v] of Object.entries(raw)) {
      const s = hookState(v);
      if (s) out[name] = s;
    }
  }
  return Object.keys(out).length ? out : undefined;
}

/** Hooks reported in the first JSON object that has them (summary record, demo result, …). */
export function hooksFromJson(...sources: unknown[]): Hooks | undefined {
  for (const s of sources) {
    if (!s || typeof s !== 'object') continue;
    const o = s as Record<string, unknown>;
    const h = normalizeHooks(o.hooks) ?? normalizeHooks((o.attach as Record<string, unknown> | undefined)?.hooks);
    if (h) return h;
  }
  return undefined;
}

export interface StrategyLines {
  /** The last "strategy X: why" line's strategy and why (the one in effect). */
  strategy?: string;
  reason?: string;
  /** Hooks named in "NAME could not attach: why" lines. */
  dropped: Hooks;
  /** From "attached: N programs". */
  programs?: number;
}

/** What the tool's stderr says about the strategy and the hooks it dropped. */
export function parseStrategyLines(stderr: string): StrategyLines {
  const out: StrategyLines = { dropped: {} };
  for (const raw of stderr.split('\n')) {
    const line = raw.replace(/^kvm-trace:\s*/, '').trim();
    let m = /^strategy (\S+): (.*)$/.exec(line);
    if (m) {
      out.strategy = m[1];
      out.reason = m[2];
    }
    m = /(?:^|:\s)(\w+) could not attach: (.*)$/.exec(line);
    if (m) out.dropped[m[1]] = { attached: false, reason: m[2] };
    m = /^attached: (\d+) programs?/.exec(line);
    if (m) out.programs = Number(m[1]);
  }
  return out;
}

/** Names of the copy hooks that are attached. */
export function attachedCopyHooks(hooks: Hooks): string[] {
  return Object.entries(hooks)
    .filter(([name, s]) => s.attached && COPY_HOOK.test(name))
    .map(([name]) => name);
}
