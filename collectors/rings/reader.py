"""The consumer side of a ring: validate a ring file, drain its records into numpy in batches."""

from __future__ import annotations

import errno
import mmap
import os
import stat
import struct
import time
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np

from tickscope.probe import layout as L


class RingFormatError(Exception):
    """A ring file that is not (or no longer) a tickscope ring. The message is one line."""


class RingDescriptorsExhausted(RingFormatError):
    """No file descriptor left to open or map a ring (EMFILE/ENFILE): try again later."""


class RingTruncatedError(RingFormatError):
    """The ring file shrank under the mapping: a page past its new end cannot be read (SIGBUS)."""


class RingCounterError(RingFormatError):
    """The ring's counters contradict each other or their own history: the header cannot be
    trusted any more. ``head_ok`` says whether ``head`` itself still passed its checks, so the
    records up to it may still be read."""

    def __init__(self, message: str, head_ok: bool):
        super().__init__(message)
        self.head_ok = head_ok


# Counters are u64 on disk and int64 in the collector (numpy). Even one record per nanosecond
# takes 146 years to count to 2**62; a value beyond it is corruption, not traffic.
COUNTER_LIMIT = 1 << 62
# No writer publishes faster than one record per nanosecond (the C probe costs ~15 ns); allow a
# whole ring's worth on top for writers that publish ``head`` in batches.
MAX_RECORDS_PER_NS = 1
PID_MAX_LIMIT = 1 << 22  # the kernel's ceiling for /proc/sys/kernel/pid_max on 64-bit
assert L.OFF_DROPPED_FULL == L.OFF_HEAD + 8
_HEAD_AND_DROPPED = struct.Struct("<QQ")


class RingCounters(NamedTuple):
    """One consistent reading of a ring's counters. Exact accounting, per ring:
    ``produced = drained_before_attach + drained + in ring + dropped``."""

    head: int  # records published by the writer since the ring was created
    dropped: int  # records the writer dropped because the ring was full
    tail: int  # records released by the consumer (us)

    @property
    def produced(self) -> int:
        return self.head + self.dropped

    @property
    def backlog(self) -> int:
        return self.head - self.tail


def check_counters(now: RingCounters, capacity: int, before: RingCounters | None, elapsed_ns: int,
                   where: str = "ring") -> None:  # fmt: skip
    """Raise ``RingCounterError`` naming the rule and the values when counters cannot be true.
    ``before`` is the previous reading (None at attach); ``elapsed_ns`` the time since it (or
    since the ring was created), which bounds how much the counters can have grown."""
    head, dropped, tail = now
    if before is not None:  # the common case, in one comparison chain (drain calls this each time)
        grow_limit = elapsed_ns * MAX_RECORDS_PER_NS + capacity
        if (before.head <= head <= tail + capacity and tail <= head < COUNTER_LIMIT and before.dropped <= dropped
                < COUNTER_LIMIT and head - before.head <= grow_limit and dropped - before.dropped <= grow_limit):  # fmt: skip
            return

    def fail(rule: str, head_ok: bool):
        raise RingCounterError(f"{where}: impossible counters ({rule})", head_ok)

    if head >= COUNTER_LIMIT:
        fail(f"head={head} is beyond {COUNTER_LIMIT}", False)
    if head < tail:
        fail(f"head={head} is behind tail={tail}", False)
    if head - tail > capacity:
        fail(f"head-tail={head - tail} exceeds capacity={capacity}", False)
    grow_limit = max(elapsed_ns, 0) * MAX_RECORDS_PER_NS + capacity
    if before is not None:
        if head < before.head:
            fail(f"head went back from {before.head} to {head}", False)
        if head - before.head > grow_limit:
            fail(f"head grew by {head - before.head} in {elapsed_ns} ns", False)
    if dropped >= COUNTER_LIMIT:
        fail(f"dropped_full={dropped} is beyond {COUNTER_LIMIT}", True)
    if before is not None:
        if dropped < before.dropped:
            fail(f"dropped_full went back from {before.dropped} to {dropped}", True)
        if dropped - before.dropped > grow_limit:
            fail(f"dropped_full grew by {dropped - before.dropped} in {elapsed_ns} ns", True)
    elif elapsed_ns > 0 and head + dropped > grow_limit:
        fail(f"head+dropped_full={head + dropped} records in the {elapsed_ns} ns since the ring was created",
             head + capacity <= grow_limit)  # fmt: skip


@dataclass(frozen=True)
class PointInfo:
    name: str
    stage: str
    clock: int
    flags: int


def point_dtype() -> np.dtype:
    return np.dtype([("ts", "<u8"), ("trace", "<u8"), ("point", "<u2"), ("leg", "<u2"), ("thread", "<u4"),
                     ("dims", "<u8")])  # fmt: skip


def tick_dtype(n_points: int) -> np.dtype:
    return np.dtype([("ts", "<u8", (n_points,)), ("trace", "<u8"), ("leg", "<u8"), ("dims", "<u8")])


def _cstr(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode("utf-8", errors="replace")


class RingReader:
    """Single consumer of one ring file. ``drain()`` returns the records published since last time."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._where = f"ring {self.path}"
        fd = _open_own_regular_file(self.path)
        try:
            st = os.fstat(fd)
            if st.st_size < L.OFF_DIM_VALUES:
                raise RingFormatError(
                    f"ring {self.path}: truncated header ({st.st_size} bytes, expected at least {L.OFF_DIM_VALUES})"
                )
            self.mm = mmap.mmap(fd, st.st_size)  # holds a duplicate of fd until closed
        except OSError as e:
            raise _open_error(self.path, e, "map") from None
        finally:
            os.close(fd)
        try:
            self._validate_header(st.st_size)
            self._u64 = np.frombuffer(self.mm, dtype="<u8", count=L.DATA_OFFSET // 8)
            self._check_no_other_reader()
            self.tail = int(self._u64[L.OFF_TAIL // 8])
            self.drained_before_attach = self.tail  # released by an earlier collector
            self.drained = 0
            self.peak_demand = 0  # the most slots the ring would have needed at once (backlog + drops)
            self.last: RingCounters | None = None
            self._last_read_ns = 0
            self.counter_error: RingCounterError | None = None  # set when attached already corrupt
            try:
                self.counters()
            except RingCounterError as e:
                self.counter_error = e
        except BaseException:
            self._u64 = None
            self.mm.close()
            raise
        self.dtype = point_dtype() if self.kind == L.KIND_POINT else tick_dtype(self.n_points)
        self.records = np.frombuffer(self.mm, dtype=self.dtype, count=self.capacity, offset=L.DATA_OFFSET)
        # The same slots as opaque bytes, to copy and clear them: numpy copies a structured array
        # field by field (28-35 ns a record against 1.4-4 ns as bytes, measured on both layouts).
        self._slots = self.records.view(np.dtype((np.void, self.dtype.itemsize)))
        self._slot_bytes = self.records.view(np.uint8).reshape(self.capacity, self.dtype.itemsize)
        self._none = np.empty(0, self.dtype)  # what an empty drain returns (no copy of the mapping)
        self._closed_seen = False
        self._u64[L.OFF_READER_HEARTBEAT_NS // 8] = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
        struct.pack_into("<I", self.mm, L.OFF_READER_PID, os.getpid())

    OTHER_READER_FRESH_NS = 2_000_000_000  # a collector polls at least every 20 ms

    def _check_no_other_reader(self) -> None:
        """Two consumers of one SPSC ring would each take records from the other and both write
        ``tail``: refuse a ring another live collector is draining right now."""
        (pid,) = struct.unpack_from("<I", self.mm, L.OFF_READER_PID)
        beat = int(self._u64[L.OFF_READER_HEARTBEAT_NS // 8])
        age = time.clock_gettime_ns(time.CLOCK_MONOTONIC) - beat
        if pid and pid != os.getpid() and 0 <= age < self.OTHER_READER_FRESH_NS and _pid_running(pid):
            raise RingFormatError(
                f"ring {self.path}: already drained by another collector, pid {pid} (stop that one first)"
            )

    def _validate_header(self, size: int) -> None:
        mm = self.mm
        (magic, version, kind, rsize, n_points, capacity, clock, pid, tid, _flags, cmono, creal, data_off,
         name) = L.STATIC_FORMAT.unpack_from(mm, 0)  # fmt: skip
        where = f"ring {self.path}"
        if magic != L.MAGIC:
            raise RingFormatError(
                f"{where}: bad magic {magic:#018x} (not a tickscope ring, whose magic is {L.MAGIC:#018x}: name ring files only)"
            )
        if version < L.LAYOUT_VERSION:
            raise RingFormatError(
                f"{where}: layout version {version} comes from an older tickscope probe, before legs and dimensions "
                f"(rebuild or restart the writer with this tickscope's probe, layout {L.LAYOUT_VERSION})"
            )
        if version != L.LAYOUT_VERSION:
            raise RingFormatError(
                f"{where}: layout version {version}, this tickscope reads {L.LAYOUT_VERSION} (upgrade tickscope)"
            )
        if kind not in L.KIND_NAMES:
            raise RingFormatError(
                f"{where}: unknown record kind {kind} (expected one of {sorted(L.KIND_NAMES)}: not a tickscope writer?)"
            )
        if not 1 <= n_points <= L.MAX_POINTS:
            raise RingFormatError(
                f"{where}: {n_points} probe points (expected 1..{L.MAX_POINTS}: a damaged header?)"
            )
        expected_rsize = L.record_size_for(kind, n_points)
        if rsize != expected_rsize:
            raise RingFormatError(
                f"{where}: record size {rsize} (expected {expected_rsize} for {L.KIND_NAMES[kind]} records of {n_points} "
                "points: a writer built against another layout? rebuild it with this probe)"
            )
        if capacity < 2 or capacity & (capacity - 1):
            raise RingFormatError(
                f"{where}: capacity must be a power of 2: capacity={capacity} (fix the writer's capacity)"
            )
        if not 0 < pid <= PID_MAX_LIMIT:
            raise RingFormatError(
                f"{where}: writer pid {pid} is not a process id (expected 1..{PID_MAX_LIMIT})"
            )
        if data_off != L.DATA_OFFSET:
            raise RingFormatError(
                f"{where}: data offset {data_off} (expected {L.DATA_OFFSET}: a writer built against another layout?)"
            )
        expected_size = L.ring_file_size(capacity, rsize)
        if size < expected_size:
            raise RingFormatError(f"{where}: truncated ({size} bytes, header says {expected_size})")
        self.ring_size = expected_size  # the bytes we read: the file must keep at least these
        self.kind, self.record_size, self.n_points, self.capacity = kind, rsize, n_points, capacity
        self.clock_domain, self.writer_pid, self.writer_tid = clock, pid, tid
        self.created_monotonic_ns, self.created_realtime_ns = cmono, creal
        self.writer_name = _cstr(name)
        self.points: list[PointInfo] = []
        for i in range(n_points):
            pname, stage, pclock, flags = L.POINT_ENTRY.unpack_from(
                mm, L.OFF_POINT_TABLE + i * L.POINT_ENTRY_SIZE
            )
            if pclock not in L.CLOCK_NAMES:
                raise RingFormatError(f"{where}: point {i} has unknown clock domain {pclock}")
            self.points.append(PointInfo(_cstr(pname), _cstr(stage), pclock, flags))
        if not all(p.name for p in self.points):
            raise RingFormatError(
                f"{where}: a probe point has an empty name (name every point in the writer)"
            )
        self.dims = []  # the ring's declared dimensions, by slot
        for k in range(L.MAX_DIMS):
            off = L.OFF_DIM_NAMES + k * L.DIM_NAME_SIZE
            dim = _cstr(mm[off : off + L.DIM_NAME_SIZE])
            if not dim:
                break
            self.dims.append(dim)
        self._dim_values: list[tuple[int, str]] = []  # value id - 1 -> (slot, value)

    def dim_values(self) -> list[tuple[int, str]]:
        """The interned dimension values, by id - 1: (slot, value). Read incrementally (the
        writer appends); an entry naming an undeclared slot is kept as such and never matched."""
        (count,) = struct.unpack_from("<I", self.mm, L.OFF_DIM_COUNT)
        count = min(count, L.MAX_DIM_VALUES)
        for i in range(len(self._dim_values), count):
            slot, _, raw = L.DIM_VALUE_ENTRY.unpack_from(
                self.mm, L.OFF_DIM_VALUES + i * L.DIM_VALUE_ENTRY.size
            )
            self._dim_values.append((slot, _cstr(raw)))
        return self._dim_values

    # -- header fields, read fresh each time: the producer changes them --------------------------
    @property
    def head(self) -> int:
        return int(self._u64[L.OFF_HEAD // 8])

    @property
    def dropped_full(self) -> int:
        """Records the writer dropped because the ring was full (read now, checked)."""
        return self.counters().dropped

    @property
    def writer_closed(self) -> bool:
        """Read fresh while mapped; after ``close()``, what was read last."""
        if self._u64 is not None:
            self._closed_seen = bool(self._u64[L.OFF_WRITER_CLOSED // 8])
        return self._closed_seen

    @property
    def writer_heartbeat_ns(self) -> int:
        return int(self._u64[L.OFF_WRITER_HEARTBEAT_NS // 8])

    @property
    def produced(self) -> int:
        """Every record the writer tried to write: published plus dropped because full (read now, checked)."""
        return self.counters().produced

    @property
    def in_ring_seen(self) -> int:
        """Records published but not drained yet, as of the last checked counters."""
        return self.last.head - self.tail

    def check_size(self) -> None:
        """Raise ``RingTruncatedError`` if the file no longer holds the whole ring. A writer (or
        anyone with write access) that truncates a mapped file turns our next read of a page past
        its end into SIGBUS, which kills the collector outright: Python cannot catch it (the
        faulting load would run again and again). So look before touching: one fstat on the
        mapping's own descriptor. A truncation between this look and the read is still fatal;
        that window is one drain long."""
        size = self.mm.size()
        if size < self.ring_size:
            raise RingTruncatedError(f"{self._where}: truncated to {size} bytes while attached "
                                     f"(the ring is {self.ring_size}): the writer or someone else shrank it (leave ring files to "
                                     "their writer)")  # fmt: skip

    def counters(self) -> RingCounters:
        """Read ``head`` and ``dropped`` once and check them against each other, against our own
        ``tail`` and against what was read before. Raises ``RingCounterError`` (and keeps the last
        good values in ``last``) when they cannot be true, ``RingTruncatedError`` when the file
        shrank (see ``check_size``)."""
        self.check_size()
        now = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
        head, dropped = _HEAD_AND_DROPPED.unpack_from(self.mm, L.OFF_HEAD)
        got = RingCounters(head, dropped, self.tail)
        before = self.last
        try:
            check_counters(got, self.capacity, before, now - self._last_read_ns if before else
                           now - self.created_monotonic_ns, where=self._where)  # fmt: skip
        except RingCounterError as e:
            # Keep what can still be believed: a sane head with the last sane drop count.
            good_head = head if e.head_ok else (before.head if before else self.tail)
            self.last = RingCounters(good_head, before.dropped if before else 0, self.tail)
            raise
        # Drops since the last reading had no slot: the ring would have needed them on top of the
        # backlog (at attach, every earlier drop counts: nobody was draining).
        self.peak_demand = max(self.peak_demand, got.backlog + dropped - (before.dropped if before else 0))
        self.last, self._last_read_ns = got, now
        return got

    @property
    def read_to_head(self) -> bool:
        """Whether every record up to the head last read (``counters``) has been taken: not so
        after a drain held to ``max_records`` or to the ring's end (``peek``)."""
        return self.last is not None and self.tail >= self.last.head

    def drain_trusted(self, max_records: int | None = None) -> np.ndarray:
        """After a ``RingCounterError``: the records up to the last head that passed its checks."""
        self.check_size()
        return self._take(self.last.head - self.tail, max_records)

    LIVENESS_CHECK_NS = 50_000_000  # /proc reads cost ~20 us; a death noticed 50 ms late is fine

    def writer_alive(self) -> bool:
        """Whether the writer may still write: not closed, and its process alive (looked at once
        per LIVENESS_CHECK_NS for all of that process's rings: a thread's ring each, 50 of them
        polled 4 times a second read /proc 200 times a second before)."""
        if self.writer_closed:
            return False
        now = time.monotonic_ns()
        if now < _ALIVE_UNTIL.get(self.writer_pid, 0):
            return True
        alive = self._writer_alive_now()
        if alive:
            if len(_ALIVE_UNTIL) >= _ALIVE_KEPT:  # a daemon's writers come and go by the thousand
                _ALIVE_UNTIL.clear()
            _ALIVE_UNTIL[self.writer_pid] = now + self.LIVENESS_CHECK_NS
        else:
            _ALIVE_UNTIL.pop(self.writer_pid, None)
        return alive

    def _writer_alive_now(self) -> bool:
        try:
            os.kill(self.writer_pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return _pid_not_zombie(self.writer_pid)

    def calibration_pairs(self) -> list[tuple[int, int, int, int]]:
        (count,) = struct.unpack_from("<I", self.mm, L.OFF_CALIB_COUNT)
        n = min(count, L.CALIB_SLOTS)
        pairs = [
            L.CALIB_ENTRY.unpack_from(self.mm, L.OFF_CALIB_ENTRIES + i * L.CALIB_ENTRY.size) for i in range(n)
        ]
        return sorted(p for p in pairs if p[1])

    def drain(self, max_records: int | None = None) -> np.ndarray:
        """Copy out the records in [tail, head), release their slots, return them in order.
        Raises ``RingCounterError`` before touching a slot if the counters are impossible."""
        return self._take(self.counters().head - self.tail, max_records)

    def peek(self, max_records: int | None = None) -> np.ndarray:
        """The records in [tail, head), in order, up to ``max_records`` and the end of the ring
        (the rest comes with the next call), in place: a view of the mapping, not a copy. The
        caller reads them, then hands them back with ``release``; nothing may keep the view
        (``close`` fails while one lives). Raises ``RingCounterError`` before touching a slot if
        the counters are impossible."""
        n = self.counters().head - self.tail
        if max_records is not None:
            n = min(n, max_records)
        start = self.tail & (self.capacity - 1)
        return self.records[start : start + min(n, self.capacity - start)]

    def release(self, n: int) -> None:
        """Hand the next ``n`` records' slots back to the writer."""
        if n == 0:  # an idle ring: nothing to hand back, but the writer sees us reading
            self._u64[L.OFF_READER_HEARTBEAT_NS // 8] = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
            return
        start = self.tail & (self.capacity - 1)
        first = min(n, self.capacity - start)
        if self.kind == L.KIND_TICK:
            # Tick writers stamp straight into free slots: hand them back clean.
            self._slot_bytes[start : start + first] = 0
            self._slot_bytes[: n - first] = 0
        self.tail += n
        self.drained += n
        self._u64[L.OFF_TAIL // 8] = self.tail
        self._u64[L.OFF_READER_HEARTBEAT_NS // 8] = time.clock_gettime_ns(time.CLOCK_MONOTONIC)

    def _take(self, n: int, max_records: int | None) -> np.ndarray:
        if max_records is not None:
            n = min(n, max_records)
        if n == 0:  # an idle ring, polled: no copy (a concatenate of records is ~40 µs even empty)
            self.release(0)
            return self._none
        start = self.tail & (self.capacity - 1)
        first = min(n, self.capacity - start)
        out = np.concatenate((self._slots[start : start + first], self._slots[: n - first])).view(self.dtype)
        self.release(n)
        return out

    def close(self) -> None:
        """Unmap the ring, which also closes the descriptor the mapping holds. The last readings
        (``last``, ``tail``, ``drained``, ``writer_closed``) stay, so the ring's accounting does."""
        self.records = self._slots = self._slot_bytes = None
        self._u64 = None
        self.mm.close()  # BufferError if a view of the mapping escaped: a leak to fix, not to hide


# writer pid -> monotonic ns until which it counts as alive: one look at /proc per process
_ALIVE_UNTIL: dict[int, int] = {}
_ALIVE_KEPT = 4096


def _pid_not_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return True
    return stat.rsplit(b")", 1)[-1].split()[0] != b"Z"


def _pid_running(pid: int) -> bool:
    if not 0 < pid <= PID_MAX_LIMIT:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return _pid_not_zombie(pid)


def _open_own_regular_file(path: Path) -> int:
    """Open a ring read-write only if it is a regular file of ours, not reached through a link.

    Rings live in shared directories (``/dev/shm``): a planted ``x.ring`` symlink would otherwise
    have the collector map, and write ``tail`` into, any file it can open (as root: any file).
    ``O_NOFOLLOW`` refuses the link itself; ``fstat`` on the opened descriptor (not the name,
    which may change in between) checks what was actually opened."""
    where = f"ring {path}"
    try:
        fd = os.open(path, os.O_RDWR | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise RingFormatError(
            f"{where}: no such file (is the writer running? list its ring directory)"
        ) from None
    except PermissionError:
        raise RingFormatError(
            f"{where}: permission denied (rings are mode 0600: run as the writer's user)"
        ) from None
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise RingFormatError(
                f"{where}: is a symbolic link (name the ring file itself: tickscope never opens links)"
            ) from None
        raise _open_error(path, e, "open") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise RingFormatError(f"{where}: not a regular file ({_file_kind(st.st_mode)})")
        if st.st_uid != os.geteuid():
            raise RingFormatError(
                f"{where}: owned by uid {st.st_uid}, not by this user, uid {os.geteuid()} "
                "(attach as the writer's user)"
            )
    except BaseException:
        os.close(fd)
        raise
    return fd


def _open_error(path: Path, e: OSError, verb: str) -> RingFormatError:
    if e.errno in (errno.EMFILE, errno.ENFILE):
        return RingDescriptorsExhausted(f"ring {path}: cannot {verb} ({e.strerror})")
    return RingFormatError(f"ring {path}: cannot {verb} ({e.strerror or e})")


def _file_kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a fifo"), (stat.S_ISCHR, "a device"),
                       (stat.S_ISBLK, "a device"), (stat.S_ISSOCK, "a socket")):  # fmt: skip
        if test(mode):
            return name
    return f"mode {mode:o}"


def find_rings(directory: str | os.PathLike, known: set[str] | frozenset = frozenset()) -> list[Path]:
    """The ring files in ``directory``, by name, but those whose path (``str``) is in ``known``: a
    collector lists its directory at every poll, and a Path made per ring it already reads cost
    ~20 µs a ring (1 ms a poll with 50 writers' rings)."""
    d = str(Path(directory))
    try:
        names = os.listdir(d)
    except (FileNotFoundError, NotADirectoryError):
        return []
    prefix = d if d.endswith(os.sep) else d + os.sep  # str(Path(d, n)), without a join per name
    return sorted(Path(d, n) for n in names if n.endswith(".ring") and prefix + n not in known)
