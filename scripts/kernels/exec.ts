/**
 * `--exec CMD`: run a shell command inside a kernel, in the same folder as here (the host's `/` is the
 * guest's root, so the checkout and its dist/ are at the same path), with /dev/kvm ready (kvm-amd loaded).
 * $KT_OUT names a writable folder whose files come back to the host (GuestRun.files).
 */
import { GUEST_OUT } from './guest-init.js';

const GUEST_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/** Single-quote for sh. */
export function shQuote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

/** The job script guest-init.ts runs chrooted: environment, folder, then the command. */
export function jobScript(cmd: string, cwd: string): string {
  return [
    `export PATH=${GUEST_PATH} HOME=/root LANG=C.UTF-8 TERM=dumb KT_OUT=${GUEST_OUT} KT_GUEST=1`,
    `cd ${shQuote(cwd)} || exit 127`,
    cmd,
    '',
  ].join('\n');
}
