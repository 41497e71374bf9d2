"""The run loop's sleep between polls, cut short by what the next poll must see at once.

A collector at low rates sleeps up to ``engine.POLL_MAX_S`` between polls (each poll has a fixed
cost). Two things must not wait out such a sleep:

- **a process of the subject ending**: the run ends when it does, not up to a sleep later (a pidfd
  per process, readable once it has exited);
- **a new ring in the ring directory**: a writer that starts mid-run has no rate the pace knows
  of (``Collector.safe_sleep_s`` bounds only the rings it has seen filling), so its first poll
  comes as soon as its ring file appears (inotify on the directory: ``IN_CREATE``,
  ``IN_MOVED_TO``), and the pace is bounded by its rate from then on.

Neither costs a writer anything: the kernel wakes the collector on a process exit or a file
creation, never on a record. Where either is missing (a kernel without ``pidfd_open`` or inotify,
a directory it refuses) the sleep is a plain sleep for that part, as before.
"""

from __future__ import annotations

import ctypes
import errno
import os
import select
import time
from pathlib import Path

# linux/inotify.h
_IN_CREATE, _IN_MOVED_TO = 0x100, 0x80
_IN_NONBLOCK, _IN_CLOEXEC = os.O_NONBLOCK, os.O_CLOEXEC


def _inotify_fd(directory: Path) -> int | None:
    """A non-blocking inotify descriptor watching ``directory`` for new entries; None where the C
    library or the kernel offers none."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)  # the C library the interpreter runs on
        init, add = libc.inotify_init1, libc.inotify_add_watch
    except (OSError, AttributeError):
        return None
    add.argtypes = (ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32)
    fd = init(_IN_NONBLOCK | _IN_CLOEXEC)
    if fd < 0:
        return None
    if add(fd, os.fsencode(directory), _IN_CREATE | _IN_MOVED_TO) < 0:
        os.close(fd)
        return None
    return fd


class Wakeup:
    """``sleep(s)``: sleep up to ``s`` seconds, or less if a watched process exits or an entry
    appears in the watched directory. ``close()`` releases the descriptors."""

    def __init__(self, pids: list[int] = (), ring_dir: Path | None = None):
        self._pidfds: list[int] = []
        for pid in pids:
            try:
                self._pidfds.append(os.pidfd_open(pid))
            except (OSError, AttributeError):  # gone already (the next poll sees it), or no pidfd
                continue
        self._inotify = _inotify_fd(ring_dir) if ring_dir is not None else None
        fds = self._pidfds + ([self._inotify] if self._inotify is not None else [])
        self._poller = select.poll() if fds else None
        for fd in fds:
            self._poller.register(fd, select.POLLIN)

    def sleep(self, seconds: float) -> str | None:
        """What cut the sleep short: ``"exit"``, ``"ring"``, or None (it ran its length)."""
        if self._poller is None:
            time.sleep(seconds)
            return None
        # poll(2), not select(2): a collector of thousands of rings holds descriptors past 1024
        ready = self._poller.poll(max(seconds, 0.0) * 1000.0)
        woke = None
        for fd, _ in ready:
            if fd == self._inotify:
                self._drain_events()
                woke = woke or "ring"
            else:  # readable for good once its process exited: watched no longer
                self._poller.unregister(fd)
                self._pidfds.remove(fd)
                os.close(fd)
                woke = "exit"
        return woke

    def _drain_events(self) -> None:
        while True:
            try:
                if not os.read(self._inotify, 1 << 16):
                    return
            except BlockingIOError:
                return
            except OSError as e:
                if e.errno != errno.EINTR:
                    return

    def close(self) -> None:
        for fd in self._pidfds + ([self._inotify] if self._inotify is not None else []):
            os.close(fd)
        self._pidfds, self._inotify, self._poller = [], None, None
