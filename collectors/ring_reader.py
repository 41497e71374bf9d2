"""The consumer side of a ring: validate a ring file, drain its records into numpy in batches."""

from __future__ import annotations

import mmap
import os
import struct
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tickscope.probe import layout as L


class RingFormatError(Exception):
    """A ring file that is not (or no longer) a tickscope ring. The message is one line."""


@dataclass(frozen=True)
class PointInfo:
    name: str
    stage: str
    clock: int
    flags: int


def point_dtype() -> np.dtype:
    return np.dtype([("ts", "<u8"), ("trace", "<u8"), ("point", "<u4"), ("thread", "<u4"), ("aux", "<u8")])


def tick_dtype(n_points: int) -> np.dtype:
    return np.dtype([("ts", "<u8", (n_points,)), ("trace", "<u8"), ("aux", "<u8")])


def _cstr(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode("utf-8", errors="replace")


class RingReader:
    """Single consumer of one ring file. ``drain()`` returns the records published since last time."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        try:
            fd = os.open(self.path, os.O_RDWR)
        except FileNotFoundError:
            raise RingFormatError(f"ring {self.path}: no such file") from None
        except PermissionError:
            raise RingFormatError(
                f"ring {self.path}: permission denied (rings are mode 0600: run as the writer's user)"
            ) from None
        try:
            size = os.fstat(fd).st_size
            if size < L.DATA_OFFSET:
                raise RingFormatError(
                    f"ring {self.path}: truncated header ({size} bytes, expected at least {L.DATA_OFFSET})"
                )
            self.mm = mmap.mmap(fd, size)
        finally:
            os.close(fd)
        self._validate_header(size)
        self._u64 = np.frombuffer(self.mm, dtype="<u8", count=L.DATA_OFFSET // 8)
        self.dtype = point_dtype() if self.kind == L.KIND_POINT else tick_dtype(self.n_points)
        self.records = np.frombuffer(self.mm, dtype=self.dtype, count=self.capacity, offset=L.DATA_OFFSET)
        self.tail = int(self._u64[L.OFF_TAIL // 8])
        self.drained = 0
        self._alive_until = 0  # monotonic ns until which the writer counts as alive (cached)
        self._u64[L.OFF_READER_HEARTBEAT_NS // 8] = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
        struct.pack_into("<I", self.mm, L.OFF_READER_PID, os.getpid())

    def _validate_header(self, size: int) -> None:
        mm = self.mm
        (magic, version, kind, rsize, n_points, capacity, clock, pid, tid, _flags, cmono, creal, data_off,
         name) = L.STATIC_FORMAT.unpack_from(mm, 0)  # fmt: skip
        where = f"ring {self.path}"
        if magic != L.MAGIC:
            raise RingFormatError(
                f"{where}: bad magic {magic:#018x}, expected {L.MAGIC:#018x} (not a tickscope ring)"
            )
        if version != L.LAYOUT_VERSION:
            raise RingFormatError(
                f"{where}: layout version {version}, this tickscope reads {L.LAYOUT_VERSION} (upgrade the writer or tickscope)"
            )
        if kind not in L.KIND_NAMES:
            raise RingFormatError(
                f"{where}: unknown record kind {kind}, expected one of {sorted(L.KIND_NAMES)}"
            )
        if not 1 <= n_points <= L.MAX_POINTS:
            raise RingFormatError(f"{where}: {n_points} probe points, expected 1..{L.MAX_POINTS}")
        expected_rsize = L.record_size_for(kind, n_points)
        if rsize != expected_rsize:
            raise RingFormatError(
                f"{where}: record size {rsize}, expected {expected_rsize} for {L.KIND_NAMES[kind]} records of {n_points} points"
            )
        if capacity < 2 or capacity & (capacity - 1):
            raise RingFormatError(f"{where}: capacity must be a power of 2: capacity={capacity}")
        if data_off != L.DATA_OFFSET:
            raise RingFormatError(f"{where}: data offset {data_off}, expected {L.DATA_OFFSET}")
        expected_size = L.ring_file_size(capacity, rsize)
        if size < expected_size:
            raise RingFormatError(f"{where}: truncated ({size} bytes, header says {expected_size})")
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
            raise RingFormatError(f"{where}: a probe point has an empty name")

    # -- header fields, read fresh each time: the producer changes them --------------------------
    @property
    def head(self) -> int:
        return int(self._u64[L.OFF_HEAD // 8])

    @property
    def dropped_full(self) -> int:
        return int(self._u64[L.OFF_DROPPED_FULL // 8])

    @property
    def writer_closed(self) -> bool:
        return bool(self._u64[L.OFF_WRITER_CLOSED // 8])

    @property
    def writer_heartbeat_ns(self) -> int:
        return int(self._u64[L.OFF_WRITER_HEARTBEAT_NS // 8])

    @property
    def produced(self) -> int:
        """Every record the writer tried to write: published plus dropped because full."""
        return self.head + self.dropped_full

    LIVENESS_CHECK_NS = 50_000_000  # /proc reads cost ~20 us; a death noticed 50 ms late is fine

    def writer_alive(self) -> bool:
        if self.writer_closed:
            return False
        now = time.monotonic_ns()
        if now < self._alive_until:
            return True
        alive = self._writer_alive_now()
        if alive:
            self._alive_until = now + self.LIVENESS_CHECK_NS
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
        """Copy out the records in [tail, head), release their slots, return them in order."""
        head = self.head
        tail = self.tail
        if head < tail or head - tail > self.capacity:
            raise RingFormatError(
                f"ring {self.path}: corrupted counters head={head} tail={tail} capacity={self.capacity}"
            )
        n = head - tail
        if max_records is not None:
            n = min(n, max_records)
        if n == 0:
            self._u64[L.OFF_READER_HEARTBEAT_NS // 8] = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
            return self.records[:0].copy()
        start = tail & (self.capacity - 1)
        first = min(n, self.capacity - start)
        if first == n:
            out = self.records[start : start + n].copy()
        else:
            out = np.concatenate((self.records[start:], self.records[: n - first]))
        if self.kind == L.KIND_TICK:
            # Tick writers stamp straight into free slots: hand them back clean.
            self.records[start : start + first] = 0
            if first < n:
                self.records[: n - first] = 0
        self.tail = tail + n
        self.drained += n
        self._u64[L.OFF_TAIL // 8] = self.tail
        self._u64[L.OFF_READER_HEARTBEAT_NS // 8] = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
        return out

    def close(self) -> None:
        self.records = None
        self._u64 = None
        try:
            self.mm.close()
        except BufferError:
            pass


def _pid_not_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return True
    return stat.rsplit(b")", 1)[-1].split()[0] != b"Z"


def find_rings(directory: str | os.PathLike) -> list[Path]:
    d = Path(directory)
    if not d.is_dir():
        return []
    return sorted(p for p in d.iterdir() if p.name.endswith(".ring"))
