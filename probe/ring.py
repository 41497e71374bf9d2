"""Python probe writers: the subject's side of a tickscope ring.

Two writers, one ring file each (see ``layout`` for the bytes):

``TickWriter``: the hot path. A tick fills a vector of stamps, one per declared point (a u64 view
of the ring slot it will be published in), then commits it as one record::

    from time import perf_counter_ns
    from tickscope.probe import Point, TickWriter

    probe = TickWriter([Point("md.rx", clock="realtime"), "md.decoded", Point("book.updated", stage="book")])
    MD_RX, MD_DECODED, BOOK = range(3)
    t = probe.stamps
    t[MD_RX] = kernel_rx_stamp
    t[MD_DECODED] = perf_counter_ns()
    t[BOOK] = perf_counter_ns()
    t = probe.commit(trace_id)    # publishes the record; returns the next tick's (clean) vector
                                  # (commit_leg(trace_id, leg) for one leg of a tick that fans out)
    probe.close()                 # at the end (also done at interpreter exit)

``PointWriter``: one 32-byte record per probe point (``record(point, trace_id)``), for points
that happen outside a tick's flow (an ack arriving later, a rare event) and for parity with C.

Legs (one tick, several orders): declare the fan-out point with ``Point(..., leg=True)``; every
record of a point at or after it names its leg (``record(ORDER_TX, seq, leg=k)``,
``commit_leg(seq, k)``), the points before it are shared. Dimensions: declare up to four per
writer (``dims=["venue", "symbol"]``), intern each value once off the hot path
(``word = probe.dims(venue="XNAS", symbol="AAPL")``, cached) and pass the word with the record
(``record(..., dims=word)`` / ``commit(seq, dims=word)``).

Closing a writer (``close()``, or interpreter exit) marks its ring closed, so a collector knows
the writer is done rather than dead. The file is left for the collector to drain and remove when
one is attached or announced (``tickscope profile`` sets ``$TICKSCOPE_COLLECTOR_PID``); a program
run without tickscope removes its own ring, leaving nothing in ``/dev/shm``.

Each writer belongs to one thread (single producer). Neither blocks nor allocates when the ring
is full: the record is dropped and counted in the header, where the collector reports it.
This module imports nothing outside the standard library, so a subject can use it without
numpy, rich or typer installed.

Ordering: the record is stored before ``head`` with plain stores. That is a release on x86-64
(TSO); on weakly ordered CPUs use the C header, which issues a real release store.
"""

from __future__ import annotations

import atexit
import mmap
import os
import struct
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from . import layout as L
from .clock import clock_pair

# The item format of every u64 view the writers store through. The layout's fields are little-endian
# u64; where C's unsigned long is that too (LP64 Linux), "L" is the same bytes as "Q" and 11 ns
# cheaper per store: CPython converts an int with PyLong_AsUnsignedLong's digit loop for "L" but
# with the generic byte-array routine for "Q" (bench: probe_stamp_ns, memoryview 'Q' vs 'L').
_NATIVE_U64 = struct.calcsize("@L") == 8 and sys.byteorder == "little"
U64_FORMAT = "L" if _NATIVE_U64 else "Q"
# The point record, packed the same cheap way (same bytes as layout.POINT_RECORD where native).
# The point id and the leg go in as one u32 (point | leg << 16: the same bytes as two u16, one
# argument fewer to pack on the hot path).
_POINT_RECORD_PACK = struct.Struct("@LLIIL") if _NATIVE_U64 else struct.Struct("<QQIIQ")
assert _POINT_RECORD_PACK.size == L.POINT_RECORD_SIZE

RING_DIR_ENV = "TICKSCOPE_RING_DIR"
COLLECTOR_PID_ENV = "TICKSCOPE_COLLECTOR_PID"  # a collector that will drain (and remove) our rings
DEFAULT_RING_DIR = "/dev/shm/tickscope"
RING_SUFFIX = ".ring"


def ring_dir() -> Path:
    """Where writers create rings: ``$TICKSCOPE_RING_DIR`` (set by ``tickscope profile``)."""
    return Path(os.environ.get(RING_DIR_ENV) or DEFAULT_RING_DIR)


@dataclass(frozen=True)
class Point:
    """A declared probe point.

    ``stage`` names the span that ends at this point (default: the point's own name);
    ``clock`` is the domain of its stamps; ``trade`` marks where tick-to-trade ends when that is
    not the last point (e.g. ``order.tx`` when ``ack.rx`` follows); ``leg`` marks the fan-out: this
    point and every point after it are stamped once per leg (order) of the trace.
    """

    name: str
    stage: str = ""
    clock: int | str = L.CLOCK_MONOTONIC
    trade: bool = False
    leg: bool = False

    @property
    def flags(self) -> int:
        return (L.POINT_TRADE if self.trade else 0) | (L.POINT_LEG if self.leg else 0)

    @property
    def clock_domain(self) -> int:
        if isinstance(self.clock, str):
            try:
                return L.CLOCK_BY_NAME[self.clock]
            except KeyError:
                raise ValueError(
                    f"unknown clock domain {self.clock!r}: expected one of {sorted(L.CLOCK_BY_NAME)}"
                ) from None
        return self.clock


def _as_points(points) -> list[Point]:
    out = [p if isinstance(p, Point) else Point(str(p)) for p in points]
    if not out:
        raise ValueError("a ring needs at least one probe point")
    if len(out) > L.MAX_POINTS:
        raise ValueError(f"at most {L.MAX_POINTS} probe points per ring: got {len(out)}")
    names = [p.name for p in out]
    if len(set(names)) != len(names):
        raise ValueError(f"probe point names must be unique: {names}")
    for p in out:
        if not p.name or len(p.name.encode()) > L.POINT_NAME_SIZE:
            raise ValueError(f"probe point name must be 1..{L.POINT_NAME_SIZE} bytes: {p.name!r}")
        if len(p.stage.encode()) > L.POINT_STAGE_SIZE:
            raise ValueError(f"stage name must be at most {L.POINT_STAGE_SIZE} bytes: {p.stage!r}")
        p.clock_domain  # noqa: B018 - validates the clock name early
    return out


def _as_dims(dims) -> list[str]:
    out = [str(d) for d in dims]
    if len(out) > L.MAX_DIMS:
        raise ValueError(f"at most {L.MAX_DIMS} dimensions per ring: got {len(out)} ({out})")
    if len(set(out)) != len(out):
        raise ValueError(f"dimension names must be unique: {out}")
    for d in out:
        if not d or len(d.encode()) > L.DIM_NAME_SIZE:
            raise ValueError(f"dimension name must be 1..{L.DIM_NAME_SIZE} bytes: {d!r}")
    return out


class RingFile:
    """Creates and maps one ring file; the writers below own one each."""

    def __init__(self, points, *, kind: int, capacity: int, name: str, directory: str | os.PathLike | None,
                 dims=()):  # fmt: skip
        L.check_capacity(capacity)
        self.points = _as_points(points)
        self.dims = _as_dims(dims)
        self.values: dict[tuple[int, str], int] = {}  # (slot, value) -> interned id
        self.kind = kind
        self.capacity = capacity
        self.record_size = L.record_size_for(kind, len(self.points))
        self.pid = os.getpid()
        self.tid = threading.get_native_id()
        directory = Path(directory) if directory is not None else ring_dir()
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        size = L.ring_file_size(capacity, self.record_size)
        self.path, fd = self._create(directory, name, size)
        try:
            self.mm = mmap.mmap(fd, size)
        finally:
            os.close(fd)
        self._write_header(name)

    def _create(self, directory: Path, name: str, size: int) -> tuple[Path, int]:
        safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in name) or "ring"
        for n in range(1000):
            suffix = f".{n}" if n else ""
            path = directory / f"{safe}.{self.pid}.{self.tid}{suffix}{RING_SUFFIX}"
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                continue
            os.ftruncate(fd, size)
            return path, fd
        raise FileExistsError(f"could not create a ring file for {name!r} in {directory}")

    def _write_header(self, name: str) -> None:
        mm = self.mm
        for i, p in enumerate(self.points):
            L.POINT_ENTRY.pack_into(
                mm, L.OFF_POINT_TABLE + i * L.POINT_ENTRY_SIZE, p.name.encode(), p.stage.encode(),
                p.clock_domain, p.flags,
            )  # fmt: skip
        for k, d in enumerate(self.dims):
            mm[
                L.OFF_DIM_NAMES + k * L.DIM_NAME_SIZE : L.OFF_DIM_NAMES
                + k * L.DIM_NAME_SIZE
                + len(d.encode())
            ] = d.encode()
        self.add_calibration_pair(clock_pair())
        mono, real = time.clock_gettime_ns(time.CLOCK_MONOTONIC), time.clock_gettime_ns(time.CLOCK_REALTIME)
        # Everything but the magic first: a reader that sees the magic sees a complete header.
        L.STATIC_FORMAT.pack_into(
            mm, 0, 0, L.LAYOUT_VERSION, self.kind, self.record_size, len(self.points), self.capacity,
            L.CLOCK_MONOTONIC, self.pid, self.tid, 0, mono, real, L.DATA_OFFSET,
            name.encode()[: L.WRITER_NAME_SIZE],
        )  # fmt: skip
        struct.pack_into("<Q", mm, L.OFF_WRITER_HEARTBEAT_NS, mono)
        struct.pack_into("<Q", mm, L.OFF_MAGIC, L.MAGIC)

    def add_calibration_pair(self, pair) -> None:
        (count,) = struct.unpack_from("<I", self.mm, L.OFF_CALIB_COUNT)
        L.CALIB_ENTRY.pack_into(
            self.mm, L.OFF_CALIB_ENTRIES + (count % L.CALIB_SLOTS) * L.CALIB_ENTRY.size, *pair
        )
        # A u32 that wraps like the C and Rust writers' (2^32 pairs outlast any session): a header
        # scribbled on by someone else must never make close() raise.
        struct.pack_into("<I", self.mm, L.OFF_CALIB_COUNT, (count + 1) & 0xFFFFFFFF)

    def intern(self, dim: str, value: str) -> int:
        """The id of ``value`` of dimension ``dim``, appended to the value table the first time."""
        try:
            slot = self.dims.index(dim)
        except ValueError:
            raise ValueError(f"dimension {dim!r} not declared: this ring declares {self.dims}") from None
        key = (slot, str(value))
        if (known := self.values.get(key)) is not None:
            return known
        raw = key[1].encode()
        if not raw or len(raw) > L.DIM_VALUE_SIZE:
            raise ValueError(f"dimension value must be 1..{L.DIM_VALUE_SIZE} bytes: {dim}={value!r}")
        n = len(self.values)
        if n >= L.MAX_DIM_VALUES:
            raise ValueError(
                f"at most {L.MAX_DIM_VALUES} dimension values per ring: {dim}={value!r} is one more"
            )
        L.DIM_VALUE_ENTRY.pack_into(self.mm, L.OFF_DIM_VALUES + n * L.DIM_VALUE_ENTRY.size, slot, 0, raw)
        # The entry before the count (plain stores are ordered on x86-64, see the module docstring).
        struct.pack_into("<I", self.mm, L.OFF_DIM_COUNT, n + 1)
        self.values[key] = n + 1
        return n + 1

    def u64(self, offset: int) -> memoryview:
        """A one-element u64 view of a header field: the cheapest store Python has."""
        return memoryview(self.mm)[offset : offset + 8].cast(U64_FORMAT)


class _Writer:
    """What both writers share: liveness, drops, close."""

    def __init__(self, ring: RingFile):
        self._ring = ring
        self.path = ring.path
        self.points = [p.name for p in ring.points]
        self._head = ring.u64(L.OFF_HEAD)
        self._tail = ring.u64(L.OFF_TAIL)
        self._dropped = ring.u64(L.OFF_DROPPED_FULL)
        self._heartbeat = ring.u64(L.OFF_WRITER_HEARTBEAT_NS)
        self._reader_heartbeat = ring.u64(L.OFF_READER_HEARTBEAT_NS)
        self._closed = False
        # At exit rather than on garbage collection: ``record = PointWriter(...).record`` keeps
        # only the closure, and the ring must stay open for as long as that is used.
        atexit.register(self.close)

    @property
    def dimensions(self) -> list[str]:
        return list(self._ring.dims)

    def intern(self, dim: str, value) -> int:
        """The value id of ``value`` in dimension ``dim`` (interned into the ring once)."""
        return self._ring.intern(dim, value)

    def dims(self, **values) -> int:
        """The dims word attaching ``values`` (``venue="XNAS"``), for ``record``/``commit``:
        compute it once per combination, off the hot path (each value is interned once)."""
        ids = [0] * len(self._ring.dims)
        for dim, value in values.items():
            vid = self.intern(dim, value)  # raises for an undeclared dimension
            ids[self._ring.dims.index(dim)] = vid
        return L.pack_dims(ids)

    def index(self, name: str) -> int:
        """The slot (TickWriter) or point id (PointWriter) of a declared point."""
        return self.points.index(name)

    @property
    def dropped(self) -> int:
        """Records dropped because the ring was full."""
        return self._dropped[0]

    @property
    def written(self) -> int:
        return self._head[0]

    def heartbeat(self) -> None:
        """Tell the collector this writer is alive though quiet; also refresh clock calibration."""
        self._heartbeat[0] = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
        self._ring.add_calibration_pair(clock_pair())

    def collector_alive(self, max_age_s: float = 2.0) -> bool:
        """Whether a collector drained this ring recently (else records will pile up and drop)."""
        beat = self._reader_heartbeat[0]
        return beat != 0 and time.clock_gettime_ns(time.CLOCK_MONOTONIC) - beat < max_age_s * 1e9

    def close(self) -> None:
        """Mark the ring cleanly closed (also done at interpreter exit). The file stays for a
        collector that is attached or announced to drain and remove; otherwise it is removed."""
        if self._closed:
            return
        self._closed = True
        atexit.unregister(self.close)
        self.heartbeat()
        self._ring.u64(L.OFF_WRITER_CLOSED)[0] = 1
        (reader_pid,) = struct.unpack_from("<I", self._ring.mm, L.OFF_READER_PID)
        if not _collector_will_drain(reader_pid):
            try:
                self.path.unlink()
            except OSError:
                pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _collector_will_drain(reader_pid: int) -> bool:
    """Whether a live collector has attached to the ring or was announced to the writer."""
    announced = os.environ.get(COLLECTOR_PID_ENV, "")
    for pid in (reader_pid, int(announced) if announced.isdigit() else 0):
        if pid <= 0:
            continue
        try:
            os.kill(pid, 0)
            return True
        except PermissionError:
            return True
        except (OSError, OverflowError):
            continue
    return False


class TickWriter(_Writer):
    """One record per tick: ``t[i] = perf_counter_ns()`` into the stamp vector, then commit.

    The stamp vector *is* the next free slot of the ring (a u64 view), so a stamp costs one store
    and ``commit`` writes only the trace id and ``head``; it returns the vector for the next tick::

        t = probe.stamps
        for msg in feed:
            t[RX] = perf_counter_ns()
            ...
            t = probe.commit(msg.seq)

    Do not write into a vector after committing it: it belongs to the collector then.
    """

    def __init__(self, points, *, name: str = "python", capacity: int = 1 << 14, directory=None, dims=()):
        super().__init__(
            RingFile(points, kind=L.KIND_TICK, capacity=capacity, name=name, directory=directory, dims=dims)
        )
        self.commit = self._make_commit()

    @property
    def stamps(self) -> memoryview:
        """The stamp vector of the tick in progress (index = point id)."""
        return self._current()

    def _make_commit(self):
        # A closure over locals: attribute lookups on self would add a third to a commit.
        ring = self._ring
        n = len(self.points)
        capacity, mask, rsize = ring.capacity, ring.capacity - 1, ring.record_size
        whole = memoryview(ring.mm)
        slots = [
            whole[L.DATA_OFFSET + i * rsize : L.DATA_OFFSET + (i + 1) * rsize].cast(U64_FORMAT)
            for i in range(capacity)
        ]
        self._views = slots
        # Where stamps go while the ring is full: written, then dropped at commit.
        scratch_bytes = bytearray(rsize)
        scratch = memoryview(scratch_bytes).cast(U64_FORMAT)
        zero_record = bytes(rsize)
        head_v, tail_v, dropped_v, beat_v = self._head, self._tail, self._dropped, self._heartbeat
        trace_at, leg_at, dims_at = n, n + 1, n + 2
        # ``window`` yields, for each tick that will still find a free slot, the head to publish
        # when the tick before it commits and that tick's vector: (h, slot of h) for h in
        # (head, limit), limit = tail + capacity as last read. It is a zip of a range and list
        # slices, so the fast path does no Python-level arithmetic and no bounds check: one
        # ``next`` in C, and its end (StopIteration, free to set up) is the rare slow path.
        window = iter(())
        current = scratch

        def open_window(head: int):
            """Re-read the tail and hand out the vector of tick ``head`` (scratch if the ring is full)."""
            nonlocal window, current
            limit = tail_v[0] + capacity
            beat_v[0] = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
            if head >= limit:
                scratch_bytes[:] = zero_record
                window = iter(())
                current = scratch
                return scratch
            first, last = (head + 1) & mask, limit - 1  # the window's ticks: head + 1 .. last
            views = slots[first : first + last - head]
            if len(views) < last - head:  # it wraps past the end of the ring
                views += slots[: last - head - len(views)]
            window = zip(range(head + 1, limit), views, strict=True)
            current = slots[head & mask]
            return current

        def window_end():
            """The window ran out: publish the tick just committed if it has a slot, then re-open."""
            v = current  # its trace id, leg and dims are stored already
            head = head_v[0]  # the tick just committed is tick ``head``
            if v is scratch:  # it began on a full ring: land it if room appeared since
                if head >= tail_v[0] + capacity:
                    dropped_v[0] += 1
                    return open_window(head)
                slots[head & mask][:] = scratch
            head_v[0] = head + 1
            return open_window(head + 1)

        def commit(trace_id: int, dims: int = 0):
            """Publish the tick as ``trace_id``, carrying the dims word ``dims``; returns the stamp
            vector of the next tick."""
            nonlocal current
            v = current
            v[trace_at] = trace_id
            if dims != 0:  # an int comparison is specialised; a bare `if dims:` is a generic truth test
                v[dims_at] = dims
            try:
                h, current = next(window)
            except StopIteration:
                return window_end()
            head_v[0] = h  # publishes the tick: its record is complete
            return current

        def commit_leg(trace_id: int, leg: int, dims: int = 0):
            """``commit`` of one leg of a tick that fans out (a separate call: ``commit`` stays as
            cheap as before legs existed)."""
            if not 0 <= leg <= L.MAX_LEG:
                raise ValueError(f"leg must be 0..{L.MAX_LEG}: got {leg}")
            current[leg_at] = leg
            return commit(trace_id, dims)

        open_window(0)
        self._current = lambda: current
        self.commit_leg = commit_leg
        return commit


class PointWriter(_Writer):
    """One 32-byte record per probe point: ``record(point_id, trace_id[, ts, dims, leg])``."""

    def __init__(self, points, *, name: str = "python", capacity: int = 1 << 14, directory=None, dims=()):
        super().__init__(
            RingFile(points, kind=L.KIND_POINT, capacity=capacity, name=name, directory=directory, dims=dims)
        )
        self.record = self._make_record()

    def _make_record(self):
        ring = self._ring
        mm, capacity, mask = ring.mm, ring.capacity, ring.capacity - 1
        pack = _POINT_RECORD_PACK.pack_into
        head_v, tail_v, dropped_v, beat_v = self._head, self._tail, self._dropped, self._heartbeat
        tid = ring.tid
        n_points = len(self.points)
        clock = time.perf_counter_ns
        data, rsize = L.DATA_OFFSET, L.POINT_RECORD_SIZE
        head = 0
        limit = capacity

        def record(point: int, trace_id: int, ts: int | None = None, dims: int = 0, leg: int = 0) -> bool:
            """Stamp ``point`` of ``trace_id`` (leg ``leg``) now (or at ``ts``), attaching the dims
            word ``dims``; False if the ring was full."""
            nonlocal head, limit
            if ts is None:
                ts = clock()
            if not 0 <= point < n_points:
                raise IndexError(f"point id {point} not declared: this ring has {n_points} points")
            h = head
            if h >= limit:
                limit = tail_v[0] + capacity
                beat_v[0] = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
                if h >= limit:
                    dropped_v[0] += 1
                    return False
            if leg != 0:
                if not 0 <= leg <= L.MAX_LEG:
                    raise ValueError(f"leg must be 0..{L.MAX_LEG}: got {leg}")
                point |= leg << 16
            pack(mm, data + (h & mask) * rsize, ts, trace_id, point, tid, dims)
            head = h = h + 1
            head_v[0] = h
            return True

        return record
