/**
 * The reference guest's real-mode programs, one per scenario, hand-assembled with a comment per
 * instruction, and the guest-physical memory map they assume. Real mode because this host's KVM (PVM)
 * runs it by emulation out of the box; the loop count comes from ECX (set through KVM_SET_REGS), so one
 * copy of each program serves every --exits value. Each program ends with HLT; `expect` is exactly the
 * exits the VMM must see, and `end` the address after the final HLT, checked with KVM_GET_REGS at the end.
 */
import { assemble, ins, jump, label, type Assembled, type AsmLine } from './asm.js';

export const LOOP_SCENARIOS = ['pio-out', 'pio-in', 'mmio-write', 'mmio-read', 'hlt', 'mixed'] as const;
/** Every scenario; `fault` triple-faults on purpose (error-path tests) and is not part of `all`. */
export const SCENARIOS = [...LOOP_SCENARIOS, 'layout', 'fault'] as const;
export type Scenario = (typeof SCENARIOS)[number];
/** What --scenario accepts. */
export const SCENARIO_CHOICES: readonly string[] = [...SCENARIOS, 'all'];
/** What `all` runs, in order. */
export const ALL_SCENARIOS: readonly Scenario[] = [...LOOP_SCENARIOS, 'layout'];

/** Guest RAM (memory slot 0): 64 KiB at GPA 0, holding every program. */
export const RAM_GPA = 0x0;
export const RAM_SIZE = 0x10000;
/** An unbacked guest-physical address: accesses exit with KVM_EXIT_MMIO. Reached through DS base. */
export const MMIO_GPA = 0xd0000;
/** Memory slots 1..N of the layout scenario, one page each from here (set with placed buffers). */
export const LAYOUT_SLOT_GPA = 0x30000;
export const LAYOUT_SLOT_COUNT = 5;
export const PORT_OUT = 0x10;
export const PORT_IN = 0x11;

export interface GuestProgram {
  scenario: Scenario;
  asm: Assembled;
  entry: number;
  /** rip after the final HLT. */
  end: number;
  /** DS base (real mode: segment = base >> 4) the program's memory operands use. */
  dsBase: number;
  /** Initial ECX: the loop count. */
  ecx: number;
  /** Initial DX: the I/O port (mixed steps DX from PORT_OUT to PORT_IN = PORT_OUT + 1 and back). */
  port: number;
  /** Exact exit counts by reason name. The run ends at the expect.HLT-th HLT. */
  expect: Record<string, number>;
  /** BL must end as the byte sum of the values the VMM supplied to these reads (null: no check). */
  checksum: 'in' | 'mmio' | null;
  /** True when the VMM enters flat protected mode with IDT limit 0, so an exception triple-faults (`fault`). */
  breakIdt: boolean;
}

const testEcx: AsmLine[] = [
  ins([0x66, 0x85, 0xc9], 'test ecx, ecx        ; no loop iterations requested?'),
  jump(0x74, 'done', 'jz done'),
];
const loopTail: AsmLine[] = [
  ins([0x66, 0x49], 'dec ecx'),
  jump(0x75, 'loop', 'jnz loop'),
  label('done'),
  ins([0xf4], 'hlt                  ; KVM_EXIT_HLT: finished'),
];

const SOURCES: Record<Scenario, { origin: number; lines: AsmLine[] }> = {
  'pio-out': {
    origin: 0x1000,
    lines: [
      ...testEcx,
      label('loop'),
      ins([0xee], 'out dx, al           ; KVM_EXIT_IO out, 1 byte, port DX'),
      ins([0xfe, 0xc0], 'inc al               ; vary the data byte'),
      ...loopTail,
    ],
  },
  'pio-in': {
    origin: 0x1100,
    lines: [
      ...testEcx,
      label('loop'),
      ins([0xec], 'in al, dx            ; KVM_EXIT_IO in: the VMM supplies the byte'),
      ins([0x00, 0xc3], 'add bl, al           ; checksum what arrived'),
      ...loopTail,
    ],
  },
  'mmio-write': {
    origin: 0x1200,
    lines: [
      ...testEcx,
      label('loop'),
      ins([0xa2, 0x00, 0x00], 'mov [0x0000], al     ; DS:0 is unbacked: KVM_EXIT_MMIO write'),
      ins([0xfe, 0xc0], 'inc al'),
      ...loopTail,
    ],
  },
  'mmio-read': {
    origin: 0x1300,
    lines: [
      ...testEcx,
      label('loop'),
      ins([0xa0, 0x00, 0x00], 'mov al, [0x0000]     ; KVM_EXIT_MMIO read: the VMM supplies the byte'),
      ins([0x00, 0xc3], 'add bl, al           ; checksum what arrived'),
      ...loopTail,
    ],
  },
  hlt: {
    origin: 0x1400,
    lines: [
      ...testEcx,
      label('loop'),
      ins([0x66, 0x49], 'dec ecx'),
      jump(0x74, 'done', 'jz done              ; the last HLT is the final one'),
      ins([0xf4], 'hlt                  ; KVM_EXIT_HLT (no irqchip: goes to the VMM)'),
      jump(0xeb, 'loop', 'jmp loop'),
      label('done'),
      ins([0xf4], 'hlt                  ; KVM_EXIT_HLT: finished'),
    ],
  },
  mixed: {
    origin: 0x1500,
    lines: [
      ...testEcx,
      label('loop'),
      ins([0xee], 'out dx, al           ; KVM_EXIT_IO out (port DX)'),
      ins([0x42], 'inc dx               ; DX = the input port'),
      ins([0xec], 'in al, dx            ; KVM_EXIT_IO in'),
      ins([0x4a], 'dec dx               ; DX = the output port again'),
      ins([0xa2, 0x00, 0x00], 'mov [0x0000], al     ; KVM_EXIT_MMIO write'),
      ins([0xa0, 0x00, 0x00], 'mov al, [0x0000]     ; KVM_EXIT_MMIO read'),
      ins([0x00, 0xc3], 'add bl, al           ; checksum the MMIO read data'),
      ins([0xf4], 'hlt                  ; KVM_EXIT_HLT inside the loop'),
      ...loopTail,
    ],
  },
  layout: {
    origin: 0x1600,
    lines: [
      // DS base = LAYOUT_SLOT_GPA: each read hits a memory slot set up through a placed argument buffer.
      // Plain RAM reads do not exit; BL proves the slots map the host pages the VMM meant.
      ...Array.from({ length: LAYOUT_SLOT_COUNT }, (_, i): AsmLine[] => [
        ins([0xa0, 0x00, i * 0x10], `mov al, [0x${(i * 0x1000).toString(16)}]     ; memory slot ${i + 1}: no exit`),
        ins([0x00, 0xc3], 'add bl, al           ; sum the slot markers'),
      ]).flat(),
      ins([0xee], 'out dx, al           ; KVM_EXIT_IO out: one exit so KVM_RUN returns'),
      label('done'),
      ins([0xf4], 'hlt                  ; KVM_EXIT_HLT: finished'),
    ],
  },
  fault: {
    origin: 0x1700,
    lines: [
      ins([0x0f, 0x0b], 'ud2                  ; #UD with an empty IDT: #GP, #DF, triple fault (SHUTDOWN)'),
      label('done'),
      ins([0xf4], 'hlt                  ; never reached'),
    ],
  },
};

const assembled = new Map<Scenario, Assembled>();
function asmOf(s: Scenario): Assembled {
  let a = assembled.get(s);
  if (!a) assembled.set(s, (a = assemble(SOURCES[s].origin, SOURCES[s].lines)));
  return a;
}

/** Every program, for loading into guest RAM once. */
export function allPrograms(): Assembled[] {
  return SCENARIOS.map(asmOf);
}

/** Loop iterations of `mixed` for --exits N: each iteration makes 5 exits (2 IO, 2 MMIO, 1 HLT). */
export const mixedIterations = (exits: number): number => Math.ceil(exits / 5);

/** The program for `scenario` with `exits` loop exits, and the exact exits the VMM must see. */
export function programFor(scenario: Scenario, exits: number): GuestProgram {
  const asm = asmOf(scenario);
  const base = { scenario, asm, entry: asm.origin, end: asm.labels.done + 1, port: PORT_OUT, checksum: null, breakIdt: false };
  switch (scenario) {
    case 'pio-out':
    case 'pio-in':
      const io = scenario === 'pio-in' ? { port: PORT_IN, checksum: 'in' as const } : {};
      return { ...base, ...io, dsBase: 0, ecx: exits, expect: { IO: exits, HLT: 1 } };
    case 'mmio-write':
    case 'mmio-read':
      return { ...base, dsBase: MMIO_GPA, ecx: exits, expect: { MMIO: exits, HLT: 1 }, checksum: scenario === 'mmio-read' ? 'mmio' : null };
    case 'hlt':
      return { ...base, dsBase: 0, ecx: exits, expect: { HLT: Math.max(exits, 1) } };
    case 'mixed': {
      const k = mixedIterations(exits);
      return { ...base, dsBase: MMIO_GPA, ecx: k, expect: { IO: 2 * k, MMIO: 2 * k, HLT: k + 1 }, checksum: 'mmio' };
    }
    case 'layout':
      return { ...base, dsBase: LAYOUT_SLOT_GPA, ecx: 0, expect: { IO: 1, HLT: 1 } };
    case 'fault':
      return { ...base, dsBase: 0, ecx: 0, expect: { HLT: 1 }, breakIdt: true };
  }
}

/** The byte the VMM supplies for the n-th read (PIO in / MMIO read) of vCPU `vcpu`. */
export const readValue = (vcpu: number, n: number): number => (n * 13 + vcpu * 7 + 1) & 0xff;

/** The marker byte at the start of layout memory slot i (1-based). */
export const slotMarker = (slot: number): number => (slot * 17 + 5) & 0xff;
