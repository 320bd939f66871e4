/**
 * Event-loop readiness for a file descriptor (libuv poll through koffi.node.poll): the ring-buffer reader
 * uses it to be woken when the kernel signals its map fd, without a thread or a per-record FFI callback.
 */
import koffi from 'koffi';

export interface FdWatch {
  /** Stop watching and release the libuv handle. Idempotent. */
  close(): void;
  /** Do not keep the process alive just for this watch. */
  unref(): void;
}

/** Call `onReadable` from the event loop whenever `fd` is readable (level-triggered, like epoll). */
export function watchReadable(fd: number, onReadable: () => void): FdWatch {
  // koffi 3.3 calls back with (status, events) although its typings declare (events): only readability is
  // requested, so any callback means "look at the fd" (a spurious drain of an empty ring costs nothing).
  const handle = koffi.node.poll(fd, { readable: true }, () => onReadable());
  let closed = false;
  return {
    close() {
      if (closed) return;
      closed = true;
      handle.stop();
      handle.close();
    },
    unref() {
      if (!closed) handle.unref();
    },
  };
}
