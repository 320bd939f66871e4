/**
 * The pure parts of the reference guest: the placement arithmetic that is the ground truth for buffer
 * flags, the mini assembler's jump encoding, and each scenario's program and expected exit counts.
 */
import { describe, expect, it } from 'vitest';
import { assemble, ins, jump, label } from '../src/guest/asm.js';
import { crossingBackoff, expectedFlags, gtBuffer, linesTouched, minLines, placeIn, PLACEMENTS } from '../src/guest/placement.js';
import { allPrograms, mixedIterations, programFor, SCENARIOS } from '../src/guest/programs.js';

describe('placement arithmetic', () => {
  it.each([
    // addr, len, lines
    [0n, 1, 1],
    [63n, 1, 1],
    [63n, 2, 2],
    [64n, 64, 1],
    [65n, 64, 2],
    [56n, 144, 4],
    [64n, 144, 3],
    [4095n, 2, 2],
  ])('linesTouched(%s, %s) = %s', (addr, len, lines) => {
    expect(linesTouched(addr, len)).toBe(lines);
  });

  it.each([
    // addr, len, align, misaligned, cacheline_cross
    [0x1000n, 144, 8, false, false],
    [0x1001n, 144, 8, true, false], // 3 lines either way
    [0x1038n, 144, 8, false, true], // 8-aligned but 4 lines for 144 bytes
    [0x103dn, 8, 8, true, true],
    [0x1004n, 4, 4, false, false],
    [0x103en, 4, 4, true, true],
    [0x1ffcn, 8, 4, false, true], // across a page (and a line), 4-aligned
  ])('expectedFlags(%s, len %s, align %s)', (addr, len, align, misaligned, cross) => {
    const f = expectedFlags(addr, len, align);
    expect(f.misaligned).toBe(misaligned);
    expect(f.cacheline_cross).toBe(cross);
    expect(f.min_lines).toBe(minLines(len));
  });

  it.each([
    [144, 8],
    [312, 8],
    [416, 8],
    [64, 8],
    [32, 8],
    [8, 8],
    [4, 4],
    [72, 4],
  ])('every placement of a %s-byte buffer (align %s) realises its intent', (len, align) => {
    const region = 0x7f0000000000n;
    for (const p of PLACEMENTS) {
      const addr = placeIn(region, 4096, p, len, align);
      const f = expectedFlags(addr, len, align);
      if (p.intent === 'aligned') expect([f.misaligned, f.cacheline_cross]).toEqual([false, false]);
      if (p.intent === 'misaligned') expect(f.misaligned).toBe(true);
      if (p.intent === 'line-cross') expect(f.cacheline_cross).toBe(true);
      if (p.intent === 'page-cross') {
        expect(addr / 4096n).not.toBe((addr + BigInt(len) - 1n) / 4096n);
        expect(f.cacheline_cross).toBe(true);
      }
    }
  });

  it('prefers an aligned crossing when the length allows one', () => {
    expect(crossingBackoff(144, 8)).toBe(8);
    expect(crossingBackoff(8, 8)).toBe(1); // an aligned 8-byte buffer can never cross a line
    expect(gtBuffer('arg', 'from_user', 0x2038n, 144, 8, 'line-cross')).toEqual({
      what: 'arg', dir: 'from_user', addr: '0x2038', len: 144, align: 8, intent: 'line-cross', lines: 4, min_lines: 3,
      expected: { misaligned: false, cacheline_cross: true },
    });
  });
});

describe('mini assembler', () => {
  it('computes rel8 jumps backwards and forwards', () => {
    const a = assemble(0x1000, [label('top'), ins([0x90], 'nop'), jump(0x74, 'end', 'jz end'), jump(0xeb, 'top', 'jmp top'), label('end'), ins([0xf4], 'hlt')]);
    expect([...a.code]).toEqual([0x90, 0x74, 0x02, 0xeb, 0xfb, 0xf4]);
    expect(a.labels).toEqual({ top: 0x1000, end: 0x1005 });
    expect(a.listing[1]).toMatch(/^01001: 74 02 +; jz end$/);
  });

  it('rejects unknown labels', () => {
    expect(() => assemble(0, [jump(0xeb, 'nowhere', 'jmp')])).toThrow(/unknown label/);
  });
});

describe('scenario programs', () => {
  it('programs do not overlap and end in HLT', () => {
    const progs = allPrograms().sort((a, b) => a.origin - b.origin);
    for (let i = 1; i < progs.length; i++) expect(progs[i - 1].origin + progs[i - 1].code.length).toBeLessThanOrEqual(progs[i].origin);
    for (const s of SCENARIOS) {
      const p = programFor(s, 10);
      expect(p.asm.code[p.end - 1 - p.asm.origin]).toBe(0xf4);
    }
  });

  it.each([
    ['pio-out', 10000, { IO: 10000, HLT: 1 }],
    ['pio-in', 5, { IO: 5, HLT: 1 }],
    ['mmio-write', 7, { MMIO: 7, HLT: 1 }],
    ['mmio-read', 0, { MMIO: 0, HLT: 1 }],
    ['hlt', 3, { HLT: 3 }],
    ['hlt', 0, { HLT: 1 }],
    ['mixed', 1000, { IO: 400, MMIO: 400, HLT: 201 }],
    ['layout', 1000, { IO: 1, HLT: 1 }],
  ] as const)('%s with --exits %s expects %j', (s, n, expect_) => {
    expect(programFor(s, n).expect).toEqual(expect_);
  });

  it('mixed rounds --exits up to whole iterations of 5 exits', () => {
    expect(mixedIterations(1)).toBe(1);
    expect(mixedIterations(10)).toBe(2);
    expect(mixedIterations(11)).toBe(3);
  });
});
