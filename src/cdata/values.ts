/**
 * C values read from memory (a DataView over a record, little-endian) and the forms they take in the JSONL
 * records: a JS number is exact only below 2^53, so a 64-bit value is a number when it fits and a "0x…"
 * string otherwise (addresses are always "0x…"). Every conversion between the three forms — raw bytes,
 * number, hex string — lives here once: the decoder writes them, the analysis reads them back.
 */

const TWO32 = 4294967296;
/** Hi word of Number.MAX_SAFE_INTEGER. */
const MAX_SAFE_HI = 0x1fffff;

/** u64 as a number (exact below 2^53: times in ns, lengths). */
export function u64n(dv: DataView, off: number): number {
  return dv.getUint32(off + 4, true) * TWO32 + dv.getUint32(off, true);
}

/** s64 as a number (exact within ±2^53: return values, errnos). */
export function s64n(dv: DataView, off: number): number {
  return dv.getInt32(off + 4, true) * TWO32 + dv.getUint32(off, true);
}

/** u64 as "0x…" hex (no leading zeros) without going through BigInt. */
export function hex64(dv: DataView, off: number): string {
  const hi = dv.getUint32(off + 4, true);
  const lo = dv.getUint32(off, true);
  // "0x0" (every KVM_RUN's argument) is one shared string: no allocation, and later compares are a pointer check.
  if (hi === 0) return lo === 0 ? '0x0' : `0x${lo.toString(16)}`;
  return `0x${hi.toString(16)}${lo.toString(16).padStart(8, '0')}`;
}

/** A u64 as a number when exact, else "0x…". */
export function u64Value(dv: DataView, off: number): number | string {
  const hi = dv.getUint32(off + 4, true);
  return hi <= MAX_SAFE_HI ? hi * TWO32 + dv.getUint32(off, true) : hex64(dv, off);
}

/** An s64 as a number when exact, else its two's-complement bits as "0x…". */
export function s64Value(dv: DataView, off: number): number | string {
  const hi = dv.getInt32(off + 4, true);
  return hi <= MAX_SAFE_HI && hi >= -MAX_SAFE_HI - 1 ? hi * TWO32 + dv.getUint32(off, true) : hex64(dv, off);
}

/** "0a1b2c…": `n` bytes in memory order (byte arrays, and integers wider than 64 bits). */
export function bytesHex(dv: DataView, at: number, n: number): string {
  let s = '';
  for (let i = 0; i < n; i++) {
    const b = dv.getUint8(at + i);
    s += (b < 16 ? '0' : '') + b.toString(16);
  }
  return s;
}

/** A NUL-terminated char array as a string (comm is ASCII in practice; other bytes map to Latin-1). */
export function cstr(dv: DataView, off: number, max: number): string {
  let s = '';
  for (let i = 0; i < max; i++) {
    const c = dv.getUint8(off + i);
    if (c === 0) break;
    s += String.fromCharCode(c);
  }
  return s;
}

/** A bigint as "0x…". */
export function hexAddr(v: bigint): string {
  return `0x${v.toString(16)}`;
}

/** Parse a "0x…" address string (or decimal string / number / bigint) into a bigint; undefined if it is not one. */
export function parseAddr(v: unknown): bigint | undefined {
  if (typeof v === 'bigint') return v;
  if (typeof v === 'number') return Number.isSafeInteger(v) && v >= 0 ? BigInt(v) : undefined;
  if (typeof v !== 'string') return undefined;
  const s = v.trim();
  if (!/^(0x[0-9a-f]+|[0-9]+)$/i.test(s)) return undefined;
  return BigInt(s);
}

/**
 * A number from a decoded field: integers as-is, "0x…" strings (large values, addresses) parsed when exact.
 * The decoder writes only exact integers; anything else (1.5, 1e308, read back from an edited file) is
 * no field value.
 */
export function fieldNumber(v: unknown): number | undefined {
  if (typeof v === 'number') return Number.isSafeInteger(v) ? v : undefined;
  const b = parseAddr(v);
  return b !== undefined && b <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(b) : undefined;
}
