/**
 * Generates src/kvm/abi/{ioctls,caps,exit-reasons}.generated.ts from the installed uapi headers
 * (/usr/include/linux/kvm.h and every kvm header it includes, i.e. the x86 asm/kvm.h).
 *
 * Why a C program: request numbers embed sizeof(argument type), and struct sizes are exactly what people get
 * wrong by hand. So the header is parsed only to learn *which* macros exist, in which fd-kind section, with
 * which argument type; every number and size is then printed by a small C program compiled with the
 * machine's cc against the same headers. Defines whose argument type does not exist on x86_64 (other
 * architectures' structs) fail to compile; they are removed one by one and listed as unavailable.
 *
 * Run: `npm run gen:ioctls` (re-runnable; KVM_HEADER=/path/to/kvm.h and CC=... override the defaults).
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

type FdKind = 'system' | 'vm' | 'vcpu' | 'device';
type Dir = 'none' | 'write' | 'read' | 'readwrite';

/** One `#define NAME body` as it appears in a header, with continuation lines joined. */
interface Define {
  name: string;
  params: string | null;
  body: string;
  file: string;
  line: number;
  /** fd-kind section the header's comments put it in, or null before the first section comment. */
  section: FdKind | null;
  /** Index in the header's sequence of top-level items (defines and code lines), for "runs" of defines. */
  seq: number;
}

interface HeaderIoctl {
  name: string;
  /** Set when the body is just another ioctl macro's name (KVM_TRACE_ENABLE → __KVM_DEPRECATED_MAIN_W_0x06). */
  aliasOf: string | null;
  macro: '_IO' | '_IOR' | '_IOW' | '_IOWR' | null;
  nrExpr: string;
  argType: string | null;
  section: FdKind | null;
  file: string;
  line: number;
}

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const outDir = join(root, 'src', 'kvm', 'abi');
const kvmHeader = process.env.KVM_HEADER ?? '/usr/include/linux/kvm.h';
const cc = process.env.CC ?? 'cc';

/** Section comments in kvm.h ("ioctls for VM fds", ...) and the fd kind each one opens. */
const SECTION_COMMENTS: Array<[RegExp, FdKind]> = [
  [/ioctls?\s+for\s+\/dev\/kvm\s+fds?/i, 'system'],
  [/ioctls?\s+for\s+fds\s+returned\s+by\s+KVM_CREATE_DEVICE/i, 'device'],
  [/ioctls?\s+for\s+vm\s+fds?/i, 'vm'],
  [/ioctls?\s+for\s+vcpu\s+fds?/i, 'vcpu'],
];

/**
 * Where the header's section comments are incomplete or wrong. Entries follow the ":Type:" lines of
 * Documentation/virt/kvm/api.rst (Linux 6.x), plus what x86 code accepts beyond them (KVM_GET/HAS_DEVICE_ATTR
 * on /dev/kvm, KVM_CAP_SYS_ATTRIBUTES). The vCPU section of kvm.h runs to the end of the file, so later VM
 * ioctls (KVM_CLEAR_DIRTY_LOG, KVM_RESET_DIRTY_RINGS, ...) need an entry here; several ioctls are valid on
 * more than one fd kind.
 */
const FD_KIND_OVERRIDES: Record<string, FdKind[]> = {
  KVM_CHECK_EXTENSION: ['system', 'vm'],
  KVM_GET_MSRS: ['system', 'vcpu'], // feature MSRs on /dev/kvm
  KVM_GET_SUPPORTED_HV_CPUID: ['system', 'vcpu'],
  KVM_X86_GET_MCE_CAP_SUPPORTED: ['system'],
  KVM_ENABLE_CAP: ['vcpu', 'vm'],
  KVM_SET_TSC_KHZ: ['vcpu', 'vm'],
  KVM_GET_TSC_KHZ: ['vcpu', 'vm'],
  KVM_GET_STATS_FD: ['vm', 'vcpu'],
  KVM_MEMORY_ENCRYPT_OP: ['vm', 'vcpu'],
  KVM_SET_DEVICE_ATTR: ['device', 'vm', 'vcpu'],
  KVM_GET_DEVICE_ATTR: ['device', 'vm', 'vcpu', 'system'],
  KVM_HAS_DEVICE_ATTR: ['device', 'vm', 'vcpu', 'system'],
  KVM_S390_INTERRUPT: ['vm', 'vcpu'],
  KVM_S390_MEM_OP: ['vcpu', 'vm'],
  KVM_S390_UCAS_MAP: ['vcpu'],
  KVM_S390_UCAS_UNMAP: ['vcpu'],
  KVM_S390_VCPU_FAULT: ['vcpu'],
  KVM_ARM_PREFERRED_TARGET: ['vm'],
  KVM_S390_GET_SKEYS: ['vm'],
  KVM_S390_SET_SKEYS: ['vm'],
  KVM_S390_GET_CMMA_BITS: ['vm'],
  KVM_S390_SET_CMMA_BITS: ['vm'],
  KVM_MEMORY_ENCRYPT_REG_REGION: ['vm'],
  KVM_MEMORY_ENCRYPT_UNREG_REGION: ['vm'],
  KVM_HYPERV_EVENTFD: ['vm'],
  KVM_CLEAR_DIRTY_LOG: ['vm'],
  KVM_S390_PV_COMMAND: ['vm'],
  KVM_X86_SET_MSR_FILTER: ['vm'],
  KVM_RESET_DIRTY_RINGS: ['vm'],
  KVM_XEN_HVM_GET_ATTR: ['vm'],
  KVM_XEN_HVM_SET_ATTR: ['vm'],
  KVM_XEN_HVM_EVTCHN_SEND: ['vm'],
  KVM_S390_ZPCI_OP: ['vm'],
};

/** The deprecated placeholders name their fd kind: __KVM_DEPRECATED_{MAIN,VM,VCPU}_... */
function deprecatedKind(name: string): FdKind | null {
  const m = /^__KVM_DEPRECATED_(MAIN|VM|VCPU)_/.exec(name);
  if (!m) return null;
  return m[1] === 'MAIN' ? 'system' : m[1] === 'VM' ? 'vm' : 'vcpu';
}

/** The kvm headers the compiler really includes for <linux/kvm.h> (asks cc, so the multiarch path is right). */
function kvmHeaders(): string[] {
  const deps = execFileSync(cc, ['-M', '-x', 'c', '-'], { input: `#include "${kvmHeader}"\n`, encoding: 'utf8' });
  const files = deps.replace(/\\\n/g, ' ').split(/\s+/).filter((f) => f.endsWith('.h'));
  return [...new Set(files.filter((f) => basename(f) === 'kvm.h'))];
}

/** Every top-level #define of a header, in order, with the section it sits in. */
function parseDefines(file: string): Define[] {
  const text = readFileSync(file, 'utf8');
  // Alternatives: a block comment; a #define with continuation lines; a code line up to any comment start.
  const re = /\/\*[\s\S]*?\*\/|^[ \t]*#[ \t]*define[ \t]+(\w+)(\([^)]*\))?((?:\\\n|[^\n])*)|^[ \t]*(?:[^\s/#]|\/(?!\*))(?:[^/\n]|\/(?!\*))*/gm;
  const out: Define[] = [];
  let section: FdKind | null = null;
  let seq = 0;
  for (let m = re.exec(text); m; m = re.exec(text)) {
    const s = m[0];
    if (s.startsWith('/*')) {
      for (const [pat, kind] of SECTION_COMMENTS) if (pat.test(s)) section = kind;
      continue;
    }
    seq++;
    if (!m[1]) continue; // a code line: only breaks runs of defines
    const body = m[3]
      .replace(/\\\n/g, ' ')
      .replace(/\/\*[\s\S]*?\*\//g, ' ')
      .replace(/\/\*.*$/, '')
      .replace(/\s+/g, ' ')
      .trim();
    const line = text.slice(0, m.index).split('\n').length;
    out.push({ name: m[1], params: m[2] ?? null, body, file, line, section, seq });
  }
  return out;
}

const IOC_RE = /^(_IO|_IOR|_IOW|_IOWR)\(\s*KVMIO\s*,\s*([^,()]+?)\s*(?:,\s*(.+?))?\s*\)$/;

function findIoctls(defines: Define[]): HeaderIoctl[] {
  const byName = new Map(defines.map((d) => [d.name, d]));
  const isIoctl = (d: Define | undefined): boolean => !!d && !d.params && IOC_RE.test(d.body);
  const out: HeaderIoctl[] = [];
  for (const d of defines) {
    if (d.params) continue;
    const m = IOC_RE.exec(d.body);
    if (m) {
      out.push({ name: d.name, aliasOf: null, macro: m[1] as HeaderIoctl['macro'], nrExpr: m[2], argType: m[3] ?? null,
        section: d.section, file: d.file, line: d.line });
    } else if (/^\w+$/.test(d.body) && isIoctl(byName.get(d.body))) {
      out.push({ name: d.name, aliasOf: d.body, macro: null, nrExpr: '', argType: null, section: d.section, file: d.file, line: d.line });
    }
  }
  for (const io of out) {
    if (!io.aliasOf) continue;
    const target = out.find((t) => t.name === io.aliasOf)!;
    io.macro = target.macro;
    io.nrExpr = target.nrExpr;
    io.argType = target.argType;
  }
  return out;
}

function fdKinds(io: HeaderIoctl): FdKind[] {
  const over = FD_KIND_OVERRIDES[io.name] ?? (io.aliasOf ? FD_KIND_OVERRIDES[io.aliasOf] : undefined);
  if (over) return over;
  const dep = deprecatedKind(io.name) ?? (io.aliasOf ? deprecatedKind(io.aliasOf) : null);
  if (dep) return [dep];
  if (!io.section) throw new Error(`${io.name} (${io.file}:${io.line}) is outside every ioctl section: add it to FD_KIND_OVERRIDES`);
  return [io.section];
}

/** Compiles and runs `lines` (printf statements, one per line); drops lines that do not compile. */
function runC(lines: string[], tmp: string): { output: string; dropped: Map<number, string> } {
  const dropped = new Map<number, string>();
  const HEAD = 3; // lines before the first statement in the generated source
  for (let attempt = 0; attempt < 8; attempt++) {
    const src = [
      '#include <stdio.h>',
      `#include "${kvmHeader}"`,
      'int main(void) {',
      ...lines.map((l, i) => (dropped.has(i) ? ';' : l)),
      'return 0; }',
      '',
    ].join('\n');
    const cfile = join(tmp, 'kvm_abi.c');
    const exe = join(tmp, 'kvm_abi');
    writeFileSync(cfile, src);
    const r = spawnSync(cc, ['-w', '-fmax-errors=1000', '-o', exe, cfile], { encoding: 'utf8' });
    if (r.status === 0) return { output: execFileSync(exe, { encoding: 'utf8' }), dropped };
    let found = false;
    for (const m of r.stderr.matchAll(/kvm_abi\.c:(\d+):\d+: error: (.*)/g)) {
      const idx = Number(m[1]) - HEAD - 1;
      if (idx < 0 || idx >= lines.length) throw new Error(`cc failed outside the generated statements:\n${r.stderr}`);
      if (!dropped.has(idx)) dropped.set(idx, m[2]);
      found = true;
    }
    if (!found) throw new Error(`cc failed:\n${r.stderr}`);
  }
  throw new Error('cc kept failing after dropping statements');
}

const DIRS: Dir[] = ['none', 'write', 'read', 'readwrite'];

interface Computed {
  name: string;
  cmd: number;
  dir: Dir;
  nr: number;
  size: number;
  argType: string | null;
  argStruct: string | null;
  fdKinds: FdKind[];
  aliases: string[];
}

interface Unavailable {
  name: string;
  dir: Dir;
  nr: number;
  argType: string | null;
  fdKinds: FdKind[];
  reason: string;
}

function structTag(argType: string | null): string | null {
  const m = argType ? /^struct\s+(\w+)$/.exec(argType) : null;
  return m ? m[1] : null;
}

function computeIoctls(ioctls: HeaderIoctl[], tmp: string): { table: Computed[]; unavailable: Unavailable[] } {
  const lines = ioctls.map((io) => {
    const size = io.argType ? `(unsigned long)sizeof(${io.argType})` : '0UL';
    return `printf("%s %u %u %u %lu\\n", "${io.name}", (unsigned)(${io.name}), (unsigned)_IOC_DIR(${io.name}), (unsigned)_IOC_NR(${io.name}), ${size});`;
  });
  const { output, dropped } = runC(lines, tmp);
  const rows = new Map(output.trim().split('\n').map((l) => {
    const [name, cmd, dir, nr, size] = l.split(' ');
    return [name, { cmd: Number(cmd), dir: Number(dir), nr: Number(nr), size: Number(size) }];
  }));
  // For the ones whose argument type is missing on this architecture, evaluate the nr expression alone.
  const droppedList = [...dropped.keys()].map((i) => ioctls[i]);
  const nrOut = droppedList.length
    ? runC(droppedList.map((io) => `printf("%s %u\\n", "${io.name}", (unsigned)(${io.nrExpr}));`), tmp).output
    : '';
  const nrs = new Map(nrOut.trim().split('\n').filter(Boolean).map((l) => {
    const [name, nr] = l.split(' ');
    return [name, Number(nr)];
  }));
  const macroDir: Record<string, Dir> = { _IO: 'none', _IOW: 'write', _IOR: 'read', _IOWR: 'readwrite' };
  const table: Computed[] = [];
  const unavailable: Unavailable[] = [];
  ioctls.forEach((io, i) => {
    const row = rows.get(io.name);
    if (!row) {
      unavailable.push({ name: io.name, dir: macroDir[io.macro!], nr: nrs.get(io.name)!, argType: io.argType,
        fdKinds: fdKinds(io), reason: `${io.argType} is not defined for this architecture (${dropped.get(i)})` });
      return;
    }
    table.push({ name: io.name, cmd: row.cmd, dir: DIRS[row.dir], nr: row.nr, size: row.size, argType: io.argType,
      argStruct: structTag(io.argType), fdKinds: fdKinds(io), aliases: [] });
  });
  const byCmd = new Map<number, Computed[]>();
  table.forEach((t) => byCmd.set(t.cmd, [...(byCmd.get(t.cmd) ?? []), t]));
  for (const group of byCmd.values()) {
    if (group.length < 2) continue;
    for (const t of group) t.aliases = group.filter((o) => o !== t).map((o) => o.name);
  }
  return { table, unavailable };
}

/** Integer value of every given constant name, via printf. */
function computeConstants(names: string[], tmp: string): Map<string, number> {
  const lines = names.map((n) => `printf("%s %lld\\n", "${n}", (long long)(${n}));`);
  const { output, dropped } = runC(lines, tmp);
  if (dropped.size) throw new Error(`constants that do not compile: ${[...dropped.keys()].map((i) => names[i]).join(', ')}`);
  return new Map(output.trim().split('\n').map((l) => {
    const [n, v] = l.split(' ');
    return [n, Number(v)];
  }));
}

function headerVersion(): string {
  const v = readFileSync(join(dirname(kvmHeader), 'version.h'), 'utf8');
  const get = (k: string): string => /#define\s+\w+\s+(\d+)/.exec(v.split('\n').find((l) => l.includes(k)) ?? '')?.[1] ?? '?';
  const pkg = spawnSync('dpkg-query', ['-W', '-f=${Version}', 'linux-libc-dev'], { encoding: 'utf8' });
  const deb = pkg.status === 0 ? ` (Debian linux-libc-dev ${pkg.stdout.trim()})` : '';
  return `Linux ${get('LINUX_VERSION_MAJOR')}.${get('LINUX_VERSION_PATCHLEVEL')}.${get('LINUX_VERSION_SUBLEVEL')} uapi headers${deb}`;
}

function banner(what: string, files: string[], version: string): string {
  return [
    '/**',
    ` * GENERATED by scripts/gen-ioctl-table.ts (npm run gen:ioctls) — do not edit by hand.`,
    ` * ${what}`,
    ` * Source: ${files.join(', ')}, ${version}, values printed by a C program built with cc.`,
    ' * The running kernel may be newer than these headers: names added after this header version are absent.',
    ' */',
    '',
  ].join('\n');
}

const q = (s: string | null): string => (s === null ? 'null' : JSON.stringify(s));

function constObject(name: string, doc: string, entries: Array<[string, number]>): string {
  return [`/** ${doc} */`, `export const ${name} = {`, ...entries.map(([k, v]) => `  ${k}: ${v},`), '} as const;', ''].join('\n');
}

function main(): void {
  const headers = kvmHeaders();
  const defines = headers.flatMap(parseDefines);
  const ioctls = findIoctls(defines);
  const version = headerVersion();
  const tmp = mkdtempSync(join(tmpdir(), 'kvm-abi-'));
  try {
    const { table, unavailable } = computeIoctls(ioctls, tmp);
    const ioctlTs = [
      banner(`Every KVM ioctl (#define ... _IO*(KVMIO, ...)) of the header: ${table.length} with numbers on x86_64, ` +
        `${unavailable.length} whose argument type exists only on other architectures.`, headers, version),
      "import type { IoctlDef, UnavailableIoctl } from './ioctl-def.js';",
      '',
      `export const KVM_HEADER_VERSION = ${JSON.stringify(version)};`,
      '',
      '/** Header order. Names sharing one number list each other in `aliases`; ioctl-table.ts picks the canonical one. */',
      'export const GENERATED_IOCTLS: readonly IoctlDef[] = [',
      ...table.map((t) =>
        `  { name: ${q(t.name)}, cmd: 0x${t.cmd.toString(16).padStart(8, '0')}, dir: ${q(t.dir)}, nr: 0x${t.nr.toString(16).padStart(2, '0')}, ` +
        `size: ${t.size}, argType: ${q(t.argType)}, argStruct: ${q(t.argStruct)}, fdKinds: [${t.fdKinds.map(q).join(', ')}], ` +
        `aliases: [${t.aliases.map(q).join(', ')}] },`),
      '];',
      '',
      '/** Defined in the header but not encodable on x86_64: the argument type belongs to another architecture. */',
      'export const GENERATED_UNAVAILABLE_IOCTLS: readonly UnavailableIoctl[] = [',
      ...unavailable.map((u) =>
        `  { name: ${q(u.name)}, dir: ${q(u.dir)}, nr: 0x${u.nr.toString(16).padStart(2, '0')}, argType: ${q(u.argType)}, ` +
        `fdKinds: [${u.fdKinds.map(q).join(', ')}] },`),
      '];',
      '',
    ].join('\n');
    writeFileSync(join(outDir, 'ioctls.generated.ts'), ioctlTs);

    // Constants: plain object-like defines (no parameters) whose name has one of these prefixes.
    const plain = defines.filter((d) => !d.params && d.body !== '');
    const capNames = plain.filter((d) => d.name.startsWith('KVM_CAP_')).map((d) => d.name);
    const caps = computeConstants(capNames, tmp);
    writeFileSync(join(outDir, 'caps.generated.ts'), [
      banner(`KVM_CAP_* capability numbers (KVM_CHECK_EXTENSION / KVM_ENABLE_CAP), ${caps.size} names, prefix stripped.`, headers, version),
      constObject('KVM_CAP', 'Capability number by name without the KVM_CAP_ prefix.', [...caps].map(([n, v]) => [n.slice(8), v])),
    ].join('\n'));

    // Exit reasons are the run of consecutive KVM_EXIT_* defines that starts at KVM_EXIT_UNKNOWN; the other
    // KVM_EXIT_* names are sub-codes inside exit payloads (io.direction, hyperv.type, xen.type).
    const exitDefs = plain.filter((d) => d.name.startsWith('KVM_EXIT_'));
    const start = exitDefs.find((d) => d.name === 'KVM_EXIT_UNKNOWN');
    if (!start) throw new Error('KVM_EXIT_UNKNOWN not found');
    const reasonNames: string[] = [];
    const bySeq = new Map(plain.filter((d) => d.file === start.file).map((d) => [d.seq, d]));
    for (let d = bySeq.get(start.seq); d?.name.startsWith('KVM_EXIT_'); d = bySeq.get(d.seq + 1)) reasonNames.push(d.name);
    const subNames = exitDefs.map((d) => d.name).filter((n) => !reasonNames.includes(n));
    const groups: Array<[string, string, string[], boolean]> = [
      ['KVM_EXIT', 'struct kvm_run.exit_reason values, prefix KVM_EXIT_ stripped.', reasonNames, true],
      ['KVM_EXIT_SUBCODES', 'The other KVM_EXIT_* names: codes inside exit payloads (io.direction, hyperv.type, xen.type).', subNames, false],
    ];
    for (const [prefix, doc] of [
      ['KVM_INTERNAL_ERROR', 'run->internal.suberror values (and the emulation flag), prefix stripped.'],
      ['KVM_SYSTEM_EVENT', 'run->system_event.type values, prefix stripped.'],
      ['KVM_MSR_EXIT_REASON', 'run->msr.reason bits (and KVM_CAP_X86_USER_SPACE_MSR mask), prefix stripped.'],
      ['KVM_MP_STATE', 'struct kvm_mp_state.mp_state values, prefix stripped.'],
    ] as const) {
      groups.push([prefix, doc, plain.filter((d) => d.name.startsWith(`${prefix}_`)).map((d) => d.name), true]);
    }
    const values = computeConstants(groups.flatMap((g) => g[2]), tmp);
    const exitTs = [banner('KVM exit reasons and the small enums found in exit payloads.', headers, version)];
    for (const [name, doc, names, strip] of groups) {
      exitTs.push(constObject(name, doc, names.map((n) => [strip ? n.slice(name.length + 1) : n, values.get(n)!])));
    }
    writeFileSync(join(outDir, 'exit-reasons.generated.ts'), exitTs.join('\n'));

    process.stdout.write(
      `gen-ioctl-table: ${version}: ${table.length} ioctls (${unavailable.length} other-arch: ` +
        `${unavailable.map((u) => u.name).join(', ') || 'none'}), ${caps.size} caps, ${reasonNames.length} exit reasons\n`,
    );
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

main();
