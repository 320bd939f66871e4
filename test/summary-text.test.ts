/**
 * The summary `attach` prints on stop: the copy hooks (attached or not, and why) and the copies per ioctl by
 * source, from a summary record as the capture writes it.
 */
import { describe, expect, it } from 'vitest';
import { summaryText } from '../src/capture/summary-text.js';
import type { SummaryRecord } from '../src/decode/records.js';

const base: SummaryRecord = {
  type: 'summary', strategy: 'fentry', events: 10, lost: 0, unknown_ioctls: 0, duration_s: 1,
  ioctls: { KVM_GET_MSRS: { count: 2, errors: 0, p50_ns: 1000, p99_ns: 2000, max_ns: 2000 } },
  exits: {}, kvm_run: [], fds: { opened: 1, closed: 1, leaked: 0 },
};

describe('attach summary text', () => {
  it('lists every copy hook and the copies per ioctl, observed and derived', () => {
    const text = summaryText({
      ...base,
      hooks: {
        _copy_from_user: { attached: false, reason: 'fentry: EBUSY; kprobe: EINVAL' },
        memdup_user: { attached: true, program: 'kt_memdup_user_fentry', reason: 'fentry' },
      },
      flags: { copies: 6, bytes: 200, misaligned: 1, cacheline_cross: 2, unknown: 0, observed: 2, derived: 4, by_ioctl: { KVM_GET_MSRS: { observed: 2, derived: 4, unknown: 0 } } },
    });
    const lines = text.split('\n');
    expect(lines).toContain('copy hooks: memdup_user attached (copies through the routines they see are observed, the rest derived)');
    expect(lines).toContain('  _copy_from_user: not attached (fentry: EBUSY; kprobe: EINVAL)');
    expect(lines).toContain('  memdup_user: attached (kt_memdup_user_fentry)');
    expect(lines).toContain('copied buffers: 6 (1 misaligned, 2 crossing a cache line): 2 observed, 4 derived');
    expect(lines).toContain('copies per ioctl, by source:');
    expect(lines.find((l) => l.startsWith('  KVM_GET_MSRS'))?.split(/\s+/)).toEqual(['', 'KVM_GET_MSRS', '2', '4', '0']);
  });

  it('says nothing about hooks or copies when the capture has none (aggregate mode, no tracer)', () => {
    const text = summaryText(base);
    expect(text).not.toMatch(/copy hooks|copied buffers/);
  });
});
