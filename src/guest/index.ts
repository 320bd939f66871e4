/**
 * The reference guest's public API: runGuest and its options/result, the ground-truth record types, the
 * scenario names, the placement arithmetic (expected buffer flags) and the guest's error classes.
 */
export { runGuest, resolveScenarios, DEFAULT_EXITS, MAX_VCPUS } from './run-guest.js';
export type { GuestOptions, GuestResult, VcpuSummary } from './run-guest.js';
export type { LayoutObservation, LayoutSummary, IntentCounts } from './layout-context.js';
export type { LongModeResult } from './long-mode.js';
export * from './records.js';
export { expectedFlags, linesTouched, minLines, PLACEMENTS, LINE } from './placement.js';
export { ALL_SCENARIOS, SCENARIOS, SCENARIO_CHOICES, LOOP_SCENARIOS, PORT_IN, PORT_OUT, MMIO_GPA, type Scenario } from './programs.js';
export { GuestAborted, GuestFault, GuestUsageError } from './errors.js';
