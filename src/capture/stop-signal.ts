/**
 * One AbortSignal that ends a capture: fired by SIGINT, SIGTERM, the --duration timer, or the caller.
 * Handlers are removed again by dispose(), so a library caller (tests, demo) leaves no listeners behind.
 */
export interface StopSignal {
  signal: AbortSignal;
  /** Why it stopped: "SIGINT", "SIGTERM", "duration", or the caller's reason. */
  reason(): string | undefined;
  stop(reason: string): void;
  dispose(): void;
}

export function stopSignal(opts: { durationS?: number; signals?: boolean; parent?: AbortSignal } = {}): StopSignal {
  const ctl = new AbortController();
  let why: string | undefined;
  const stop = (reason: string): void => {
    if (ctl.signal.aborted) return;
    why = reason;
    ctl.abort(reason);
  };
  const onInt = (): void => stop('SIGINT');
  const onTerm = (): void => stop('SIGTERM');
  if (opts.signals) {
    process.on('SIGINT', onInt);
    process.on('SIGTERM', onTerm);
  }
  const timer =
    opts.durationS !== undefined && opts.durationS > 0 ? setTimeout(() => stop('duration'), opts.durationS * 1000) : undefined;
  const onParent = (): void => stop(String(opts.parent?.reason ?? 'aborted'));
  opts.parent?.addEventListener('abort', onParent, { once: true });
  return {
    signal: ctl.signal,
    reason: () => why,
    stop,
    dispose() {
      if (timer) clearTimeout(timer);
      process.off('SIGINT', onInt);
      process.off('SIGTERM', onTerm);
      opts.parent?.removeEventListener('abort', onParent);
    },
  };
}

/** Resolves when the signal aborts. */
export function untilAborted(signal: AbortSignal): Promise<void> {
  if (signal.aborted) return Promise.resolve();
  return new Promise((resolve) => signal.addEventListener('abort', () => resolve(), { once: true }));
}
