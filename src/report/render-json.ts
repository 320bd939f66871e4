/** The report model as JSON: the model itself, so scripts read exactly what the text and HTML show. */
import type { ReportModel } from './model-types.js';

export function renderJson(m: ReportModel): string {
  return `${JSON.stringify(m, null, 2)}\n`;
}
