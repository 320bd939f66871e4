import { defineConfig } from 'vitest/config';

// Tests talk to one /dev/kvm and one BPF subsystem on a 2-core machine: run files one at a time so
// real-kernel tests do not fight over CPUs and ring buffers, and give them room for guest runs.
export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    fileParallelism: false,
    testTimeout: 120_000,
    hookTimeout: 120_000,
    reporters: ['default', './test/helpers/summary-reporter.ts'],
  },
});
