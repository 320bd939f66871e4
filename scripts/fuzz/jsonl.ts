/**
 * The fuzz target for `report`'s input: lines of a capture file, mutated (cut short, characters dropped or
 * inserted, a value replaced by one of another shape, a member removed, another record type), read as
 * `report` reads them (parseRecordLine) and fed to the report model, which every so often is finished and
 * rendered as text, JSON and HTML. A line is either a record or rejected with a JsonlError naming
 * file:line (counted); anything else thrown is a finding. fuzzReportFiles does the same with whole files
 * through buildReportModelFromFile: a garbled or truncated file must give one JsonlError line with file:line.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ModelOptions } from '../../src/report/model.js';
import { buildReportModelFromFile, ReportBuilder } from '../../src/report/model.js';
import { JsonlError, parseRecordLine } from '../../src/report/jsonl.js';
import { renderReport } from '../../src/report/index.js';
import type { Finding } from './records.js';
import type { Rng } from './rng.js';

const TYPES = ['ioctl', 'kvm_run', 'fd', 'lost', 'copy', 'summary', 'exit', ''];

/** A value of some other shape than the one it replaces. */
function oddValue(rng: Rng): unknown {
  return rng.pick<unknown>([
    null,
    0,
    -1,
    1e308,
    -0.5,
    Number.MAX_SAFE_INTEGER + 2,
    '',
    'x',
    '0x',
    '0xzz',
    '0xffffffffffffffffffff',
    '-1',
    [],
    [1, 'a', null],
    {},
    { reason: 5 },
    { what: null, len: 'a' },
    true,
    'KVM_RUN',
    '__proto__',
  ]);
}

/** Every (object, key) of a parsed value, depth first. */
function slots(v: unknown, out: Array<[Record<string, unknown>, string]> = [], depth = 0): Array<[Record<string, unknown>, string]> {
  if (v === null || typeof v !== 'object' || depth > 6) return out;
  for (const k of Object.keys(v)) {
    out.push([v as Record<string, unknown>, k]);
    slots((v as Record<string, unknown>)[k], out, depth + 1);
  }
  return out;
}

/** One mutated capture line. */
export function mutateLine(line: string, rng: Rng): string {
  switch (rng.int(7)) {
    case 0:
      return line.slice(0, rng.int(line.length + 1)); // cut short
    case 1: {
      const i = rng.int(line.length + 1);
      return line.slice(0, i) + line.slice(i + 1 + rng.int(4)); // characters dropped
    }
    case 2: {
      const i = rng.int(line.length + 1);
      return line.slice(0, i) + rng.pick(['"', '{', '}', '[', ']', ',', ':', '\\', '0', '-', 'e', 'null', '\u0000']) + line.slice(i);
    }
    default: {
      let v: unknown;
      try {
        v = JSON.parse(line);
      } catch {
        return line;
      }
      const all = slots(v);
      if (all.length === 0) return JSON.stringify(oddValue(rng));
      const [obj, key] = rng.pick(all);
      const what = rng.int(4);
      if (what === 0) delete obj[key];
      else if (what === 1 && key === 'type') obj[key] = rng.pick(TYPES);
      else obj[key] = oddValue(rng);
      return rng.chance(0.05) ? JSON.stringify([v]) : JSON.stringify(v);
    }
  }
}

export interface JsonlFuzzStats {
  lines: number;
  /** Lines rejected with a JsonlError (file:line). */
  rejected: number;
  /** Lines read as records. */
  records: number;
  /** Models finished and rendered. */
  renders: number;
}

export class JsonlFuzzTarget {
  readonly stats: JsonlFuzzStats = { lines: 0, rejected: 0, records: 0, renders: 0 };
  readonly findings = new Map<string, Finding>();
  private builder: ReportBuilder;

  /** `batch`: lines per model, each model finished and rendered in the three formats. */
  constructor(
    private readonly opts: ModelOptions,
    private readonly batch = 2000,
  ) {
    this.builder = new ReportBuilder(opts);
  }

  feed(line: string): void {
    const n = ++this.stats.lines;
    let rec;
    try {
      rec = parseRecordLine('fuzz.jsonl', n, line);
    } catch (e) {
      if (e instanceof JsonlError && /^fuzz\.jsonl:\d+: [^\n]+$/.test(e.message)) this.stats.rejected++;
      else this.find('line reader', e, line);
      return;
    }
    if (rec) {
      this.stats.records++;
      try {
        this.builder.add(rec);
      } catch (e) {
        this.find('report model', e, line);
      }
    }
    if (n % this.batch === 0) this.render();
  }

  /** Finish the current model and render it (text, JSON, HTML); then start a new one. */
  render(): void {
    try {
      const m = this.builder.finish({ lines: this.stats.lines, records: this.stats.records, ignored: 0 });
      for (const f of ['text', 'json', 'html'] as const) renderReport(m, f);
      this.stats.renders++;
    } catch (e) {
      this.find('report rendering', e, '');
    }
    this.builder = new ReportBuilder(this.opts);
  }

  private find(where: string, e: unknown, line: string): void {
    const msg = e instanceof Error ? e.message : String(e);
    const frame = (e instanceof Error ? (e.stack ?? '') : '').split('\n').find((l) => /\/src\//.test(l))?.trim() ?? '';
    const key = `${where}: ${msg} ${frame.replace(/^.*\/(src\/)/, '$1')}`.slice(0, 300);
    const f = this.findings.get(key);
    if (f) f.count++;
    else this.findings.set(key, { key, message: msg, count: 1, type: -1, len: line.length, hex: line.slice(0, 400), stack: e instanceof Error ? e.stack : undefined });
  }
}

/**
 * `files` capture files of good lines with one garbled line somewhere (or a cut-short last line, or a
 * garbled one first), each read by buildReportModelFromFile and rendered: a JsonlError naming
 * FILE:LINE in one line, or a report. Returns the findings and how many files were rejected.
 */
export async function fuzzReportFiles(lines: readonly string[], rng: Rng, files: number, dir: string, opts: ModelOptions): Promise<{ files: number; rejected: number; findings: Finding[] }> {
  const findings: Finding[] = [];
  let rejected = 0;
  for (let i = 0; i < files; i++) {
    const n = rng.int(40) + 1;
    const body = Array.from({ length: n }, () => rng.pick(lines));
    const at = rng.int(n);
    body[at] = mutateLine(body[at], rng);
    const cutTail = rng.chance(0.3);
    const path = join(dir, `fuzz-${i}.jsonl`);
    writeFileSync(path, body.join('\n') + (cutTail ? '' : '\n'));
    try {
      const m = await buildReportModelFromFile(path, opts);
      for (const f of ['text', 'json', 'html'] as const) renderReport(m, f);
    } catch (e) {
      const ok = e instanceof JsonlError && e.message.startsWith(`${path}:`) && !e.message.includes('\n');
      if (ok) rejected++;
      else findings.push({ key: `report file: ${e instanceof Error ? e.message : String(e)}`.slice(0, 300), message: String(e), count: 1, type: -1, len: 0, hex: body[at].slice(0, 400), stack: e instanceof Error ? e.stack : undefined });
    }
  }
  return { files, rejected, findings };
}
