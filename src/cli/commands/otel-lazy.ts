/**
 * Opens the OpenTelemetry sink through a dynamic import, so that `attach` and `demo` without --otlp /
 * --prometheus never load the SDK (it adds ≈ 23 MB to the tracer's resident memory).
 */
import type { OtelSink } from '../../export/otel/sink.js';
import type { OtelSinkOptions } from '../../export/otel/config.js';

export async function openOtel(opts: OtelSinkOptions): Promise<OtelSink> {
  const { openOtelSink } = await import('../../export/otel/sink.js');
  return openOtelSink(opts);
}
