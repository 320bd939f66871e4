/**
 * A minimal cpio "newc" writer — the initramfs format the kernel unpacks (Documentation/driver-api/
 * early-userspace/buffer-format.rst): a 110-byte ASCII header per entry, the name, the data, each padded
 * to 4 bytes, ended by TRAILER!!!. Enough for directories, regular files, symlinks and device nodes.
 */

export interface CpioEntry {
  /** Path inside the archive, without a leading slash. */
  name: string;
  /** Full st_mode: S_IFDIR | 0o755 and so on. */
  mode: number;
  data?: Buffer;
  /** Device numbers for character/block nodes. */
  rdev?: { major: number; minor: number };
}

export const S_IFDIR = 0o040000;
export const S_IFREG = 0o100000;
export const S_IFLNK = 0o120000;
export const S_IFCHR = 0o020000;

const pad4 = (n: number): number => (4 - (n % 4)) % 4;
const hex8 = (n: number): string => n.toString(16).padStart(8, '0');

function header(ino: number, e: CpioEntry, size: number, nameSize: number): string {
  return (
    '070701' +
    [ino, e.mode, 0, 0, e.mode & S_IFDIR ? 2 : 1, 0, size, 0, 0, e.rdev?.major ?? 0, e.rdev?.minor ?? 0, nameSize, 0].map(hex8).join('')
  );
}

/** The archive bytes (uncompressed). */
export function cpioNewc(entries: readonly CpioEntry[]): Buffer {
  const parts: Buffer[] = [];
  const push = (ino: number, e: CpioEntry): void => {
    const data = e.data ?? Buffer.alloc(0);
    const name = Buffer.from(`${e.name}\0`, 'utf8');
    const head = Buffer.from(header(ino, e, data.length, name.length), 'latin1');
    parts.push(head, name, Buffer.alloc(pad4(head.length + name.length)), data, Buffer.alloc(pad4(data.length)));
  };
  entries.forEach((e, i) => push(i + 1, e));
  push(0, { name: 'TRAILER!!!', mode: 0 });
  return Buffer.concat(parts);
}
