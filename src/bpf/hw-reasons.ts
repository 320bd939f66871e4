/**
 * Names of hardware exit reasons (VMX basic exit reasons, SVM exit codes) as the running kernel prints them.
 * BTF has no enum for them (they are #defines), but the kvm:kvm_exit event's format file in tracefs carries
 * the kernel's own table in its print fmt:
 *
 *   (REC->isa == 1) ? __print_symbolic(REC->exit_reason & 0xffff, { 0, "EXCEPTION_NMI" }, …)
 *                   : __print_symbolic(REC->exit_reason, { 0x000, "read_cr0" }, …, { -1, "invalid_guest_state" })
 *
 * so the names are parsed from there: the table guarded by `isa == N` is that isa's (with its mask), the
 * other branch the other isa's. KVM_ISA_VMX is 1 and KVM_ISA_SVM 2 (arch/x86/kvm/trace.h, unchanged since the
 * event exists). A code the table lacks, or a kernel whose format cannot be read, gets a number instead.
 */
import { readFileSync } from 'node:fs';
import { tracefsDir } from './tracefs.js';

export const KVM_ISA_VMX = 1;
export const KVM_ISA_SVM = 2;
export const ISA_NAMES: Record<number, string> = { [KVM_ISA_VMX]: 'VMX', [KVM_ISA_SVM]: 'SVM' };

interface IsaTable {
  /** Bits of exit_reason the table is keyed by (VMX: the basic reason, & 0xffff). */
  mask: number;
  names: Map<number, string>;
}

export interface HwReasonNames {
  /** isa → its table; `otherwise` for the isa the print fmt's else branch covers. */
  byIsa: Map<number, IsaTable>;
  /** Where the names came from ("tracefs kvm:kvm_exit format", or why numbers are used). */
  source: string;
}

/** Evaluate a table key: "12", "0x040 + 13", "-1" → a u32. */
function evalKey(s: string): number | undefined {
  let v = 0;
  for (const part of s.split('+')) {
    const t = part.trim();
    if (!/^-?(0x[0-9a-fA-F]+|\d+)$/.test(t)) return undefined;
    v += t.startsWith('-') ? -Number(t.slice(1)) : Number(t);
  }
  return v >>> 0;
}

/** The `{ key, "name" }` pairs of the __print_symbolic call starting at `at` (its "("), and where it ends. */
function symbolicTable(fmt: string, at: number): { expr: string; names: Map<number, string>; end: number } | undefined {
  let depth = 0;
  let end = -1;
  for (let i = at; i < fmt.length; i++) {
    const ch = fmt[i];
    if (ch === '"') {
      i = fmt.indexOf('"', i + 1);
      if (i < 0) return undefined;
    } else if (ch === '(') depth++;
    else if (ch === ')' && --depth === 0) {
      end = i;
      break;
    }
  }
  if (end < 0) return undefined;
  const body = fmt.slice(at + 1, end);
  const comma = body.indexOf(',');
  const names = new Map<number, string>();
  for (const m of body.slice(comma + 1).matchAll(/\{\s*([^,{}]+?)\s*,\s*"([^"]*)"\s*\}/g)) {
    const k = evalKey(m[1]);
    if (k !== undefined && !names.has(k)) names.set(k, m[2]);
  }
  return { expr: body.slice(0, comma), names, end };
}

/** Parse a kvm_exit format file's text (pure: tested on the formats of the kernels in the matrix). */
export function parseKvmExitFormat(format: string, source = 'tracefs kvm:kvm_exit format'): HwReasonNames {
  const fmt = /print fmt: (.*)$/ms.exec(format)?.[1] ?? '';
  const byIsa = new Map<number, IsaTable>();
  const cond = /\(\s*REC->isa\s*==\s*(\d+)\s*\)\s*\?\s*__print_symbolic\(/.exec(fmt);
  if (!cond) return { byIsa, source: `${source} has no isa-keyed __print_symbolic table: exit reasons shown as numbers` };
  const isa = Number(cond[1]);
  const first = symbolicTable(fmt, cond.index + cond[0].length - 1);
  if (!first) return { byIsa, source: `${source} could not be parsed: exit reasons shown as numbers` };
  const maskOf = (expr: string): number => {
    const m = /&\s*(0x[0-9a-fA-F]+|\d+)/.exec(expr);
    return m ? Number(m[1]) >>> 0 : 0xffffffff;
  };
  byIsa.set(isa, { mask: maskOf(first.expr), names: first.names });
  const rest = /^\s*:\s*__print_symbolic\(/.exec(fmt.slice(first.end + 1));
  if (rest) {
    const second = symbolicTable(fmt, first.end + 1 + rest[0].length - 1);
    // The else branch is the other isa: VMX guards its table, SVM takes the rest.
    if (second) byIsa.set(isa === KVM_ISA_VMX ? KVM_ISA_SVM : KVM_ISA_VMX, { mask: maskOf(second.expr), names: second.names });
  }
  return { byIsa, source };
}

/** The running kernel's names (tracefs must be mounted: the tracer mounts it). */
export function kernelHwReasonNames(): HwReasonNames {
  const dir = tracefsDir();
  const path = dir && `${dir}/events/kvm/kvm_exit/format`;
  if (!path) return { byIsa: new Map(), source: 'tracefs not mounted: exit reasons shown as numbers' };
  try {
    return parseKvmExitFormat(readFileSync(path, 'utf8'));
  } catch (err) {
    return { byIsa: new Map(), source: `${path}: ${(err as NodeJS.ErrnoException).code ?? String(err)}: exit reasons shown as numbers` };
  }
}

/** "npf", "EPT_VIOLATION", or the number when the kernel's table does not name it ("0x7b" for SVM, "30" for VMX). */
export function hwReasonName(names: HwReasonNames, isa: number, reason: number): string {
  const t = names.byIsa.get(isa);
  const name = t?.names.get((reason & t.mask) >>> 0);
  if (name !== undefined) {
    // VMX flag bits above the basic reason (FAILED_VMENTRY …) stay visible.
    return t && (reason & ~t.mask) >>> 0 ? `${name}|0x${((reason & ~t.mask) >>> 0).toString(16)}` : name;
  }
  return isa === KVM_ISA_SVM ? `0x${(reason >>> 0).toString(16)}` : String(reason >>> 0);
}

/** "SVM", "VMX", or "isa N". */
export const isaName = (isa: number): string => ISA_NAMES[isa] ?? `isa ${isa}`;
