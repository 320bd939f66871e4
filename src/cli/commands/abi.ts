/**
 * `kvm-trace abi [--struct NAME]... [--json] [--cacheline N] [--check] [--btf PATH]`: struct layouts from
 * the running kernel's BTF (pahole-style: offsets, sizes, holes, cache-line boundaries, straddling
 * members) and the ABI check of kvm-trace's ioctl table and struct definitions against it. A mismatch
 * exits 1 (CliError 'check'); an unknown struct name is one line and exit 1.
 */
import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import type { CliIo } from '../io.js';
import { CliError } from '../errors.js';
import { Btf, BtfError } from '../../btf/index.js';
import { isModuleBtfPath, kernelBtf, VMLINUX_BTF } from '../../btf/kernel.js';
import { runAbi, UnknownStructError } from '../../analysis/abi/index.js';
import { systemLineSize } from '../../analysis/cacheline.js';
import { IOCTLS } from '../../kvm/abi/ioctl-table.js';
import { STRUCTS } from '../../kvm/abi/structs.js';

const VMLINUX = VMLINUX_BTF;

/**
 * The running kernel's types by default (vmlinux + kvm's module BTF when KVM is a module); a module's
 * /sys/kernel/btf/NAME split over vmlinux; else raw BTF or an ELF object's .BTF, by the file's magic.
 */
function openBtf(path: string): Btf {
  if (path === VMLINUX) return kernelBtf();
  let head: Buffer;
  try {
    head = readFileSync(path).subarray(0, 4);
  } catch (err) {
    throw new CliError('input', `cannot read BTF ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, { cause: err });
  }
  if (isModuleBtfPath(path)) return kernelBtf({ kvm: path });
  return head.toString('latin1') === '\x7fELF' ? Btf.fromElf(path) : Btf.vmlinux(path);
}

function parseLineSize(v: string | undefined): number {
  if (v === undefined) return systemLineSize();
  const n = Number(v);
  if (!Number.isInteger(n) || n < 8 || n > 4096 || (n & (n - 1)) !== 0) {
    throw new CliError('usage', `--cacheline must be a power of two between 8 and 4096 (got "${v}")`);
  }
  return n;
}

export function register(program: Command, io: CliIo): void {
  program
    .command('abi')
    .description("Struct layouts from the kernel's BTF (holes, cache lines); check KVM ioctl sizes and struct definitions against it.")
    .option('--struct <name>', 'struct or union to lay out (repeatable; default kvm_run unless --check)', (v: string, acc: string[]) => [...acc, v], [] as string[])
    .option('--json', 'print JSON: {name,size,align,members:[{name,offset,size,type,straddles,line}],holes:[...]}')
    .option('--cacheline <bytes>', "cache line size (default: the CPU's, from sysfs; 64 if unknown)")
    .option('--check', 'check every ioctl size and kvm-trace\'s struct definitions against BTF; exit 1 on a mismatch')
    .option('--btf <path>', 'BTF to read: the kernel\'s (vmlinux + kvm module BTF), a module\'s /sys/kernel/btf/NAME, raw BTF or an ELF object with .BTF', VMLINUX)
    .addHelpText('after', '\nExamples:\n  kvm-trace abi --struct kvm_run\n  kvm-trace abi --struct kvm_sregs --struct kvm_segment --json\n  kvm-trace abi --check')
    .action((opts: { struct: string[]; json?: boolean; cacheline?: string; check?: boolean; btf: string }) => {
      const lineSize = parseLineSize(opts.cacheline);
      const structs = opts.struct.length || opts.check ? opts.struct : ['kvm_run'];
      let result;
      try {
        result = runAbi(openBtf(opts.btf), { structs, json: !!opts.json, lineSize, check: !!opts.check, ioctls: IOCTLS, defs: STRUCTS });
      } catch (err) {
        if (err instanceof UnknownStructError || err instanceof BtfError) throw new CliError('input', err.message, { cause: err });
        throw err;
      }
      io.stdout.write(result.output);
      if (result.problems > 0) {
        throw new CliError('check', `abi --check: ${result.problems} mismatch${result.problems === 1 ? '' : 'es'} between kvm-trace's ABI and ${opts.btf}`);
      }
    });
}
