/**
 * The progress line on stderr while the benchmark runs: rewritten in place (\r) on a terminal, one plain
 * line per step otherwise (so logs stay readable). stdout stays clean for the table or the JSON object.
 */
export class Progress {
  private width = 0;
  private readonly tty: boolean;
  private readonly t0 = performance.now();

  constructor(private readonly stream: NodeJS.WriteStream = process.stderr) {
    this.tty = Boolean(stream.isTTY);
  }

  update(text: string): void {
    const line = `bench [${((performance.now() - this.t0) / 1000).toFixed(0)} s] ${text}`;
    if (!this.tty) {
      this.stream.write(`${line}\n`);
      return;
    }
    const cols = this.stream.columns || 120;
    const shown = line.length >= cols ? `${line.slice(0, cols - 2)}…` : line;
    this.stream.write(`\r${shown}${' '.repeat(Math.max(0, this.width - shown.length))}`);
    this.width = shown.length;
  }

  /** Erase the line (terminal) before the results are printed. */
  clear(): void {
    if (this.tty && this.width) this.stream.write(`\r${' '.repeat(this.width)}\r`);
    this.width = 0;
  }
}
