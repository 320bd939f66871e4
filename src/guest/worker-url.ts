/**
 * Where the vCPU worker's JavaScript is. A worker_thread runs plain Node: under vitest only the main thread
 * gets .ts transformed, so when this module itself is running from source (src/guest/*.ts) the worker must
 * be the compiled file under dist/ (dist/src/guest/vcpu-worker.js, built by `npm run build`); when running
 * compiled, it sits next to this module.
 */
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

export function vcpuWorkerUrl(): URL {
  const here = new URL(import.meta.url);
  const url = here.pathname.endsWith('.ts')
    ? new URL(here.href.replace(/\/src\/guest\/[^/]+\.ts$/, '/dist/src/guest/vcpu-worker.js'))
    : new URL('./vcpu-worker.js', here);
  if (!existsSync(fileURLToPath(url))) {
    throw new Error(`vCPU worker ${fileURLToPath(url)} is missing: build first (npm run build)`);
  }
  return url;
}
