// The one home of the u64 / hex / string forms a C value takes in a record (src/cdata/values.ts).
import { describe, expect, it } from 'vitest';
import { bytesHex, cstr, fieldNumber, hex64, hexAddr, parseAddr, s64n, s64Value, u64n, u64Value } from '../src/cdata/values.js';

const u64 = (v: bigint): DataView => {
  const dv = new DataView(new ArrayBuffer(8));
  dv.setBigUint64(0, BigInt.asUintN(64, v), true);
  return dv;
};

describe('64-bit values', () => {
  it.each([
    [0n, '0x0', 0, 0],
    [0x1234n, '0x1234', 0x1234, 0x1234],
    [0x100000000n, '0x100000000', 0x100000000, 0x100000000],
    [0xffff888001234000n, '0xffff888001234000', '0xffff888001234000', -131391620431872],
    [BigInt(Number.MAX_SAFE_INTEGER), '0x1fffffffffffff', Number.MAX_SAFE_INTEGER, Number.MAX_SAFE_INTEGER],
    [BigInt(Number.MAX_SAFE_INTEGER) + 1n, '0x20000000000000', '0x20000000000000', '0x20000000000000'],
    [0x8000000000000000n, '0x8000000000000000', '0x8000000000000000', '0x8000000000000000'],
  ])('%s: hex64 %s, u64Value %s, s64Value %s', (v, hex, unsigned, signed) => {
    expect(hex64(u64(v), 0)).toBe(hex);
    expect(u64Value(u64(v), 0)).toBe(unsigned);
    expect(s64Value(u64(v), 0)).toBe(signed);
    expect(hexAddr(v)).toBe(hex);
    expect(parseAddr(hex)).toBe(v);
  });

  it.each([
    [-1n, -1],
    [-25n, -25],
    [-(2n ** 52n), -(2 ** 52)],
  ])('s64 %s reads as %s', (v, n) => {
    expect(s64n(u64(v), 0)).toBe(n);
    expect(s64Value(u64(v), 0)).toBe(n);
  });

  it('u64n is exact below 2^53', () => expect(u64n(u64(0x1fffffffffffffn), 0)).toBe(Number.MAX_SAFE_INTEGER));
});

describe('parsing record fields back', () => {
  it.each([
    ['0x10', 16n],
    ['0X1f', 31n],
    [' 42 ', 42n],
    [42, 42n],
    [7n, 7n],
    [-1, undefined],
    [1.5, undefined],
    ['0xzz', undefined],
    ['', undefined],
    [null, undefined],
  ])('parseAddr(%s) = %s', (v, want) => expect(parseAddr(v)).toBe(want));

  it.each([
    [12, 12],
    ['0x20', 32],
    ['0x20000000000000', undefined],
    [Number.NaN, undefined],
    [undefined, undefined],
  ])('fieldNumber(%j) = %s', (v, want) => expect(fieldNumber(v)).toBe(want));
});

describe('bytes and strings', () => {
  const dv = new DataView(new Uint8Array([0x76, 0x6d, 0x6d, 0, 0x78, 0x0a, 0xff]).buffer);
  it('bytesHex keeps memory order and leading zeros', () => expect(bytesHex(dv, 4, 3)).toBe('780aff'));
  it('cstr stops at NUL or at max', () => {
    expect(cstr(dv, 0, 16)).toBe('vmm');
    expect(cstr(dv, 0, 2)).toBe('vm');
  });
});
