/**
 * `kvm-trace report` as a library: build the one model from a JSONL file and render it as text, JSON or
 * a self-contained HTML page. The CLI command (src/cli/commands/report.ts) and `demo` call this.
 */
import { writeFile } from 'node:fs/promises';
import { systemLineSize } from '../analysis/cacheline.js';
import { kernelTypeSource } from '../btf/type-source.js';
import { ioctlByName } from '../kvm/abi/ioctl-table.js';
import { buildReportModelFromFile, ReportBuilder, type ReportModel } from './model.js';
import type { TraceRecord } from '../decode/records.js';
import { renderHtml } from './render-html.js';
import { renderJson } from './render-json.js';
import { renderText } from './render-text.js';

export { buildReportModel, buildReportModelFromFile, reportCounts, ReportBuilder, type ReportModel } from './model.js';
export { JsonlError, readRecords } from './jsonl.js';
export { renderHtml, renderJson, renderText };

export type ReportFormat = 'text' | 'json' | 'html';
export const REPORT_FORMATS: readonly ReportFormat[] = ['text', 'json', 'html'];

export function renderReport(m: ReportModel, format: ReportFormat): string {
  return format === 'json' ? renderJson(m) : format === 'html' ? renderHtml(m) : renderText(m);
}

export interface ReportRun {
  file: string;
  format: ReportFormat;
  /** Write here instead of returning the text. */
  out?: string;
  lineSize?: number;
  btfPath?: string;
  /**
   * Hands the records to `add` instead of reading `file` as JSONL: a binary capture, decoded by the caller
   * (the CLI; decoding one belongs to a later stage than this).
   */
  feed?: (add: (r: TraceRecord) => void) => Promise<void>;
}

/** Read `file`, build the model against the running kernel's BTF (when readable) and render it. */
export async function makeReport(run: ReportRun): Promise<{ model: ReportModel; output: string }> {
  const { types, error } = kernelTypeSource(run.btfPath);
  const opts = { types, typesError: error, lookup: ioctlByName, lineSize: run.lineSize ?? systemLineSize() };
  let model: ReportModel;
  if (run.feed) {
    const b = new ReportBuilder({ file: run.file, ...opts });
    let n = 0;
    await run.feed((r) => {
      b.add(r);
      n++;
    });
    model = b.finish({ lines: n, records: n, ignored: 0 });
  } else model = await buildReportModelFromFile(run.file, opts);
  const output = renderReport(model, run.format);
  if (run.out) await writeFile(run.out, output);
  return { model, output };
}
