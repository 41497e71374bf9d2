"""The run loop's sleep between polls, cut short by what the next poll must see at once.

A collector at low rates sleeps up to ``engine.POLL_MAX_S`` between polls (each poll has a fixed
cost). Two things must not wait out such a sleep:

- **a process of the subject ending**: the run ends when it does, not up to a sleep later (a pidfd
  per process, readable once it has exited);
- **a new ring in the ring directory**: a writer that starts mid-run has no rate the pace knows
  of (``Collector.safe_sleep_s`` bounds only the rings it has seen filling), so its first poll
  comes as soon as its ring file appears (inotify on the directory: ``IN_CREATE``,
  ``IN_MOVED_TO``), and the pace is bounded by its rate from then on. At most one such wake per
  ``RING_WAKE_GAP_S``: writers that come and go by the thousand do not poll the collector per ring.

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
RING_WAKE_GAP_S = 0.05  # at most 20 ring wakes a second


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
        self._poller = select.poll() if self._fds() else None
        for fd in self._pidfds:
            self._poller.register(fd, select.POLLIN)
        self._watching_rings = False  # registered by the first sleep
        self._rings_quiet_until = 0.0

    def sleep(self, seconds: float) -> str | None:
        """What cut the sleep short: ``"exit"``, ``"ring"``, or None (it ran its length)."""
        if self._poller is None:
            time.sleep(seconds)
            return None
        end = time.monotonic() + max(seconds, 0.0)
        while True:
            now = time.monotonic()
            if self._inotify is not None and not self._watching_rings and now >= self._rings_quiet_until:
                self._poller.register(self._inotify, select.POLLIN)
                self._watching_rings = True
            # Until the ring wakes' gap has passed, only the processes are watched, and only to its end
            until = (
                end if self._watching_rings or self._inotify is None else min(end, self._rings_quiet_until)
            )
            # poll(2), not select(2): a collector of thousands of rings holds descriptors past 1024
            ready = self._poller.poll(max(until - now, 0.0) * 1000.0)
            woke = None
            for fd, _ in ready:
                if fd == self._inotify:
                    self._drain_events()
                    # Writers that come and go by the thousand would poll the collector as often:
                    # one ring wake per RING_WAKE_GAP_S, the rest wait for it (their rings are found
                    # at the poll it brings, or at the pace's next).
                    self._poller.unregister(fd)
                    self._watching_rings = False
                    self._rings_quiet_until = time.monotonic() + RING_WAKE_GAP_S
                    woke = woke or "ring"
                else:  # readable for good once its process exited: watched no longer
                    self._poller.unregister(fd)
                    self._pidfds.remove(fd)
                    os.close(fd)
                    woke = "exit"
            if woke is not None:
                return woke
            if time.monotonic() >= end:
                return None

    def _fds(self) -> list[int]:
        return self._pidfds + ([self._inotify] if self._inotify is not None else [])

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
        for fd in self._fds():
            os.close(fd)
        self._pidfds, self._inotify, self._poller = [], None, None
