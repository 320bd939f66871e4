/**
 * `kvm-trace abi` as a library function: layouts of the named structs (pahole-style text or JSON) and,
 * with `check`, the ABI check of the ioctl table and struct definitions against BTF. Takes the BTF, the
 * table and the definitions as parameters and returns the text plus the number of problems; the CLI layer
 * only parses options and turns problems into an exit code.
 */
import type { Btf } from '../../btf/index.js';
import type { RecordType } from '../../cdata/layout.js';
import type { IoctlDef } from '../../kvm/abi/ioctl-table.js';
import { abiCheck, type AbiCheckResult } from './check.js';
import { layoutJson, layoutReport } from './layout-report.js';
import { renderPahole } from './pahole.js';

export { abiCheck, checkIoctlSizes, checkStructDefs, btfSizeOfCType, type AbiCheckResult, type AbiProblem } from './check.js';
export { explainFailure } from './explain.js';
export { layoutReport, layoutJson, type LayoutReport, type RowMember, type Hole } from './layout-report.js';
export { renderPahole } from './pahole.js';

/** A --struct name the BTF has no struct or union for. */
export class UnknownStructError extends Error {
  constructor(readonly structName: string, source: string) {
    super(`no struct or union named "${structName}" in ${source}`);
    this.name = 'UnknownStructError';
  }
}

export interface AbiRunOptions {
  structs: string[];
  json: boolean;
  lineSize: number;
  check: boolean;
  ioctls: readonly IoctlDef[];
  defs: Readonly<Record<string, RecordType>>;
}

export interface AbiRunResult {
  output: string;
  problems: number;
  check?: AbiCheckResult;
}

function checkText(r: AbiCheckResult, source: string, ioctlsTotal: number, defsTotal: number): string {
  const lines = [`ABI check against ${source}:`];
  const ioctlProblems = r.problems.filter((p) => p.kind === 'ioctl-size').length;
  lines.push(`  ioctls: ${r.checked.ioctls} of ${ioctlsTotal} argument sizes checked against BTF, ${ioctlProblems} differ`);
  lines.push(`  structs: ${r.checked.structs} of ${defsTotal} definitions, ${r.checked.members} members checked, ` +
    `${r.problems.length - ioctlProblems} differences`);
  if (r.notInBtf.length) lines.push(`  not in ${source} (not checked): ${r.notInBtf.join(', ')}`);
  for (const n of r.notes) lines.push(`  note: ${n}`);
  for (const p of r.problems) lines.push(`MISMATCH ${p.message}`);
  lines.push(r.problems.length ? `${r.problems.length} ABI mismatch${r.problems.length === 1 ? '' : 'es'}` : 'ABI check passed');
  return `${lines.join('\n')}\n`;
}

export function runAbi(btf: Btf, opts: AbiRunOptions): AbiRunResult {
  const layouts = opts.structs.map((name) => {
    const l = btf.struct(name);
    if (!l) throw new UnknownStructError(name, btf.source);
    return layoutReport(l, opts.lineSize);
  });
  const check = opts.check ? abiCheck(btf, opts.ioctls, opts.defs) : undefined;
  const problems = check?.problems.length ?? 0;
  if (opts.json) {
    const ls = layouts.map(layoutJson);
    const body = check ? { ...(ls.length ? { layouts: ls } : {}), check } : ls.length === 1 ? ls[0] : ls;
    return { output: `${JSON.stringify(body, null, 2)}\n`, problems, check };
  }
  const parts = layouts.map(renderPahole);
  if (check) parts.push(checkText(check, btf.source, opts.ioctls.length, Object.keys(opts.defs).length));
  return { output: parts.join('\n'), problems, check };
}
