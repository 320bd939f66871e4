/** commander argument parsers shared by the commands: one clear line for a bad value (InvalidArgumentError). */
import { InvalidArgumentError } from 'commander';

/** A repeatable -p/--pid: appends the process id to the ones given before. */
export function pidArg(raw: string, prev: number[]): number[] {
  const n = Number(raw);
  if (!/^\d+$/.test(raw.trim()) || !Number.isSafeInteger(n) || n <= 0) throw new InvalidArgumentError(`'${raw}' is not a process id`);
  return [...prev, n];
}

/** A cache line size: a power of two from 8 to 4096 bytes. */
export function lineSizeArg(raw: string): number {
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 8 || n > 4096 || (n & (n - 1)) !== 0) {
    throw new InvalidArgumentError(`'${raw}' is not a power of two between 8 and 4096`);
  }
  return n;
}
