// The commander program: loading only the named subcommand's module must give the same command as loading
// them all (src/cli/program.ts lists each module under the name it registers).
import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { buildProgram, COMMAND_NAMES } from '../src/cli/program.js';

const io = () => {
  const stream = new Writable({ write: (_c, _e, cb) => cb() });
  return { stdout: stream, stderr: stream };
};

describe('buildProgram', () => {
  it('without argv, registers every command in the listed order', async () => {
    const program = await buildProgram(io());
    expect(program.commands.map((c) => c.name())).toEqual(COMMAND_NAMES);
  });

  it.each(COMMAND_NAMES)('argv naming %s loads that command alone, with the options it has among all', async (name) => {
    const all = (await buildProgram(io())).commands.find((c) => c.name() === name)!;
    const program = await buildProgram(io(), ['node', 'kvm-trace', name, '--help']);
    expect(program.commands.map((c) => c.name())).toEqual([name]);
    expect(program.commands[0].options.map((o) => o.flags)).toEqual(all.options.map((o) => o.flags));
  });

  it.each([[[]], [['help', 'attach']], [['atach']], [['--version']]])('argv %j loads every command', async (args) => {
    const program = await buildProgram(io(), ['node', 'kvm-trace', ...args]);
    expect(program.commands.map((c) => c.name())).toEqual(COMMAND_NAMES);
  });
});
