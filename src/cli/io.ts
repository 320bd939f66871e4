/**
 * What every subcommand is given: the streams it writes to (tests pass their own) and the shape of a
 * subcommand module. Apart from program.ts, which loads the commands, so a command never imports it.
 */
import type { Command } from 'commander';

export interface CliIo {
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream;
}

/** A subcommand module: src/cli/commands/<name>.ts exports `register`. */
export type Register = (program: Command, io: CliIo) => void;
