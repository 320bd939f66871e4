/**
 * /init of the guest (busybox sh). It loads the boot modules, mounts the host's `/` (9p tag kt-root,
 * read-only) under a tmpfs overlay so the guest can write without touching the host, mounts the writable
 * result folder (9p tag kt-out) at /run/kt-matrix inside that root, bind-mounts the unpacked kernel's
 * modules at /lib/modules/$(uname -r), loads kvm-amd with the host's modprobe (TCG emulates AMD's SVM,
 * not VMX: kvm-intel cannot be exercised this way), runs /run/kt-matrix/job.sh chrooted, and powers off.
 *
 * Progress goes to the serial console as lines starting with `KT-MATRIX:` (the host's state machine in
 * qemu.ts); the job's stdout, stderr and exit status go to files in the result folder.
 */

/** Mount points the initramfs must contain. */
export const GUEST_DIRS = ['proc', 'sys', 'lower', 'rw', 'newroot', 'out'];

export const MARK = 'KT-MATRIX:';

/** Result folder inside the chroot (the kt-out export). */
export const GUEST_OUT = '/run/kt-matrix';

export function guestInit(modules: readonly string[]): string {
  return `#!/bin/sh
export PATH=/bin
/bin/busybox --install -s /bin
mark() { echo "${MARK}$*"; }
fail() { mark "FAIL $*"; sync; poweroff -f; sleep 10; }
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mark "BOOTED $(uname -r)"
for m in ${modules.join(' ')}; do insmod /modules/$m || fail "insmod $m"; done
P9="trans=virtio,version=9p2000.L,msize=512000"
mount -t 9p -o $P9,ro,cache=loose kt-root /lower || fail "mount 9p kt-root"
mount -t 9p -o $P9 kt-out /out || fail "mount 9p kt-out"
. /out/boot.env
mount -t tmpfs -o mode=0755 tmpfs /rw || fail "tmpfs"
mkdir -p /rw/upper /rw/work
mount -t overlay overlay -o lowerdir=/lower,upperdir=/rw/upper,workdir=/rw/work /newroot || fail "overlay"
R=/newroot
mount -t proc proc $R/proc
mount -t sysfs sysfs $R/sys
mount -t devtmpfs devtmpfs $R/dev
mkdir -p $R/dev/shm $R/dev/pts
mount -t tmpfs tmpfs $R/dev/shm
# /tmp and /run stay the overlay's (host content visible, writes in the tmpfs): a checkout or a kernel
# cache under /tmp must stay reachable.
mkdir -p $R${GUEST_OUT} && mount --bind /out $R${GUEST_OUT} || fail "bind kt-out"
MODS=$R/lib/modules/$(uname -r)
mkdir -p $MODS && mount --bind /lower$KT_MODULES $MODS || fail "bind modules"
mark ROOT-READY
chroot $R /sbin/modprobe -a $KT_LOAD >/out/modprobe.log 2>&1 || mark "MODPROBE-FAILED $KT_LOAD"
mark JOB-START
# The guest's own deadline is a backstop for a host side that died without stopping QEMU (SIGKILL).
timeout -s KILL $KT_DEADLINE chroot $R /bin/sh ${GUEST_OUT}/job.sh </dev/null >/out/stdout 2>/out/stderr
echo $? >/out/status
mark "JOB-END $(cat /out/status)"
sync
umount $R${GUEST_OUT} /out 2>/dev/null
poweroff -f
sleep 10
`;
}
