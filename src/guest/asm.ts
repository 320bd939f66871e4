/**
 * A tiny two-pass "assembler" for the reference guest's hand-assembled real-mode programs: each line is
 * the instruction's bytes plus a comment, labels name positions, and short jumps name a label so the rel8
 * displacement is computed rather than counted by hand. It encodes nothing else.
 */

export type AsmLine =
  | { bytes: number[]; note: string }
  | { label: string }
  /** A 2-byte short jump: opcode (0xEB jmp, 0x74 jz, 0x75 jnz, ...) and the target label. */
  | { jump: number; to: string; note: string };

export interface Assembled {
  /** Machine code, to be loaded at `origin`. */
  code: Uint8Array;
  origin: number;
  /** Guest-physical address of each label. */
  labels: Record<string, number>;
  /** One "address: bytes  ; comment" line per instruction (shown by tests and for debugging). */
  listing: string[];
}

export const ins = (bytes: number[], note: string): AsmLine => ({ bytes, note });
export const label = (name: string): AsmLine => ({ label: name });
export const jump = (opcode: number, to: string, note: string): AsmLine => ({ jump: opcode, to, note });

export function assemble(origin: number, lines: AsmLine[]): Assembled {
  const labels: Record<string, number> = {};
  let pc = origin;
  for (const l of lines) {
    if ('label' in l) labels[l.label] = pc;
    else pc += 'jump' in l ? 2 : l.bytes.length;
  }
  const out: number[] = [];
  const listing: string[] = [];
  pc = origin;
  for (const l of lines) {
    if ('label' in l) continue;
    let bytes: number[];
    if ('jump' in l) {
      const target = labels[l.to];
      if (target === undefined) throw new Error(`asm: unknown label ${l.to}`);
      const rel = target - (pc + 2);
      if (rel < -128 || rel > 127) throw new Error(`asm: jump to ${l.to} out of rel8 range`);
      bytes = [l.jump, rel & 0xff];
    } else {
      bytes = l.bytes;
    }
    const hex = bytes.map((b) => b.toString(16).padStart(2, '0')).join(' ');
    listing.push(`${pc.toString(16).padStart(5, '0')}: ${hex.padEnd(12)} ; ${l.note}`);
    out.push(...bytes);
    pc += bytes.length;
  }
  return { code: Uint8Array.from(out), origin, labels, listing };
}
