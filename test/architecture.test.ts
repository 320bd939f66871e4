// The house rules (scripts/check-architecture.ts) hold for this tree, and the checker itself catches each
// kind of break on a tiny fixture tree.
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { checkArchitecture, findCycles, importSpecifiers, STAGES } from '../scripts/check-architecture.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');

describe('this tree', () => {
  it('has no upward import, no import cycle, no oversized file, no unplaced folder', () => {
    const broken = checkArchitecture(root).map((v) => `${v.rule}: ${v.message}`);
    expect(broken, broken.join('\n')).toEqual([]);
  });

  it('docs/ARCHITECTURE.md lists the stages in the order of the checker', () => {
    const doc = readFileSync(join(root, 'docs', 'ARCHITECTURE.md'), 'utf8');
    const at = STAGES.flatMap((s) => s.folders).map((f) => ({ f, i: doc.indexOf(`\`${f}/\``) }));
    expect(at.filter((x) => x.i < 0).map((x) => x.f), 'folders missing from docs/ARCHITECTURE.md').toEqual([]);
    const order = at.map((x) => x.i);
    expect(order).toEqual([...order].sort((a, b) => a - b));
  });
});

describe('the checker', () => {
  const dir = mkdtempSync(join(tmpdir(), 'kt-arch-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const put = (path: string, text: string): void => {
    mkdirSync(dirname(join(dir, path)), { recursive: true });
    writeFileSync(join(dir, path), text);
  };
  put('src/low/a.ts', "import { b } from '../high/b.js';\nexport const a = b;\n");
  put('src/high/b.ts', 'export const b = 1;\n');
  put('src/high/c.ts', "import type { D } from './d.js';\nexport type C = D;\n");
  put('src/high/d.ts', "export type D = number;\nexport const load = () => import('./c.js');\n");
  put('src/high/e.ts', 'export const e = 1;\n'.repeat(12));
  put('src/stray/f.ts', "export * from '../low/a.js';\n");
  put('scripts/lib/x.ts', "import { b } from '../../src/high/b.js';\nexport const x = b;\n");
  put('src/low/g.ts', "import { x } from '../../scripts/lib/x.js';\nexport const g = x;\n");
  const stages = [
    { name: 'low', folders: ['src/low'] },
    { name: 'high', folders: ['src/high'] },
  ];
  const v = checkArchitecture(dir, { stages, maxLines: 10, exceptions: { long: ['src/high/gone.ts'], upward: [] } });
  const rules = (r: string) => v.filter((x) => x.rule === r).map((x) => x.message);

  it('fails an import from a lower stage to a higher one', () => {
    expect(rules('upward')).toEqual([
      'src/low/a.ts -> src/high/b.ts: stage low imports the higher stage high',
      'src/low/g.ts imports scripts/lib/x.ts: src/ must not depend on scripts/',
    ]);
  });

  it('fails an import cycle and prints it (type-only and dynamic imports count)', () => {
    expect(rules('cycle')).toEqual(['import cycle: src/high/c.ts -> src/high/d.ts -> src/high/c.ts']);
  });

  it('fails a file over the line limit, a folder in no stage, and a stale exception', () => {
    expect(rules('too-long')).toEqual(['src/high/e.ts has 12 lines (more than 10): split it along its seams']);
    expect(rules('unplaced')).toEqual(['src/stray/ is in no stage: add it to STAGES in scripts/check-architecture.ts']);
    expect(rules('stale-exception')).toHaveLength(1);
  });

  it.each([
    ["import a from './a.js';", ['./a.js']],
    ["import type { T } from '../t.js';", ['../t.js']],
    ["export { x } from './x.js';", ['./x.js']],
    ["const m = () => import('./lazy.js');", ['./lazy.js']],
    ["import { Command } from 'commander';", []],
  ])('reads the imports of %s', (text, want) => expect(importSpecifiers(text)).toEqual(want));

  it('finds every cycle, one path per group', () => {
    const g = new Map([
      ['a', ['b']],
      ['b', ['c']],
      ['c', ['a']],
      ['d', ['d']],
      ['e', ['a']],
    ]);
    expect(findCycles(g)).toEqual([['a', 'b', 'c', 'a'], ['d', 'd']]);
  });
});
