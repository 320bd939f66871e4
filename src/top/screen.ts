/**
 * The thin terminal driver of interactive `top`, plain ANSI (no terminal library: the alternate screen,
 * cursor home/hide, erase-line and reverse video are all it needs): enter the alternate screen, hide the
 * cursor, put stdin in raw mode, hand each key chunk and each resize (SIGWINCH, which Node turns into the
 * stream's 'resize' event) to the caller, and redraw whole frames in place. stop() puts everything back
 * and is idempotent; a process 'exit' hook restores the terminal even on a crash, synchronously.
 */
import { writeSync } from 'node:fs';

const ALT_ON = '\x1b[?1049h';
const ALT_OFF = '\x1b[?1049l';
const CURSOR_HIDE = '\x1b[?25l';
const CURSOR_SHOW = '\x1b[?25h';
const HOME = '\x1b[H';
const ERASE_LINE_END = '\x1b[K';
const ERASE_BELOW = '\x1b[J';
const RESET_ATTRS = '\x1b[0m';

export interface ScreenSize {
  cols: number;
  rows: number;
}

export class Screen {
  #active = false;
  #onData: ((d: Buffer | string) => void) | null = null;
  #onResize: (() => void) | null = null;
  readonly #restoreOnExit = (): void => this.restoreSync();

  constructor(
    private readonly out: NodeJS.WriteStream,
    private readonly input: NodeJS.ReadStream,
  ) {}

  /** Is this an interactive terminal on both ends? */
  static usable(out: NodeJS.WritableStream, input: NodeJS.ReadableStream | undefined): boolean {
    return (out as NodeJS.WriteStream).isTTY === true && (input as NodeJS.ReadStream | undefined)?.isTTY === true;
  }

  size(): ScreenSize {
    return { cols: this.out.columns || 80, rows: this.out.rows || 24 };
  }

  start(onKeys: (chunk: string) => void, onResize: () => void): void {
    if (this.#active) return;
    this.#active = true;
    process.on('exit', this.#restoreOnExit);
    this.out.write(ALT_ON + CURSOR_HIDE + HOME + ERASE_BELOW);
    this.input.setRawMode(true);
    this.input.setEncoding('utf8');
    this.#onData = (d) => onKeys(String(d));
    this.input.on('data', this.#onData);
    this.input.resume();
    this.#onResize = onResize;
    this.out.on('resize', this.#onResize);
  }

  /** Replace the screen's content with `lines` (each already fitted to the width). */
  draw(lines: string[]): void {
    if (!this.#active) return;
    this.out.write(HOME + lines.map((l) => l + RESET_ATTRS + ERASE_LINE_END).join('\r\n') + ERASE_BELOW);
  }

  /** Leave the alternate screen, show the cursor, leave raw mode, stop listening. Idempotent. */
  stop(): void {
    if (!this.#active) return;
    if (this.#onData) this.input.off('data', this.#onData);
    if (this.#onResize) this.out.off('resize', this.#onResize);
    this.#onData = this.#onResize = null;
    this.input.pause();
    this.restoreSync();
    process.off('exit', this.#restoreOnExit);
  }

  /** The restoring part of stop(), synchronous (safe in an 'exit' hook). */
  private restoreSync(): void {
    if (!this.#active) return;
    this.#active = false;
    try {
      if (this.input.isRaw) this.input.setRawMode(false);
    } catch {
      // stdin already gone: nothing to restore there
    }
    const fd = (this.out as { fd?: number }).fd;
    const seq = RESET_ATTRS + CURSOR_SHOW + ALT_OFF;
    if (typeof fd === 'number') writeSync(fd, seq);
    else this.out.write(seq);
  }
}
