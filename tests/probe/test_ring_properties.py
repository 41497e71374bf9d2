"""Property tests of the ring header reader: whatever bytes a header holds, the reader answers with
a one-line RingFormatError or a ring it can drain, and the collector never crashes on it.

Bounded and deterministic (``derandomize``): the same examples on every run, a few seconds in all.
"""

import struct
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tickscope.collectors.rings.collector import Collector
from tickscope.collectors.rings.reader import (
    COUNTER_LIMIT,
    RingCounterError,
    RingCounters,
    RingFormatError,
    RingReader,
    check_counters,
)
from tickscope.probe import Point, PointWriter, TickWriter
from tickscope.probe import layout as L

PROPERTY = settings(max_examples=60, derandomize=True, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])  # fmt: skip
U64 = st.integers(0, 2**64 - 1)
COUNTER = st.one_of(st.integers(0, 4096), U64)  # small, plausible values and anything at all
EDGES = st.sampled_from([0, 1, 2**31 - 1, 2**31, 2**32 - 1, 2**62, 2**63 + 5, 2**64 - 1])


def make_ring(directory: Path, kind: str, closed: bool = True) -> Path:
    points = [Point("md.rx"), Point("signal", stage="strategy"), Point("order.tx", stage="send", trade=True)]
    if kind == "tick":
        w = TickWriter(points, name="prop", capacity=64, directory=directory)
        t = w.stamps
        for seq in range(1, 41):
            t[0], t[1], t[2] = seq * 1000, seq * 1000 + 10, seq * 1000 + 30
            t = w.commit(seq)
    else:
        w = PointWriter(points, name="prop", capacity=64, directory=directory)
        for seq in range(1, 14):
            for p in range(3):
                w.record(p, seq, ts=seq * 1000 + p * 10)
    if closed:
        w.close()
    return w.path


def collect_without_crashing(directory: Path) -> Collector:
    """Everything a session does with a ring: discover, drain, count, finish. Any exception fails."""
    collector = Collector(directory)
    collector.poll()
    counters = collector.counter_dict()
    collector.finish()
    counters = collector.counter_dict()
    for src in collector.sources:
        r = src.reader
        assert r.last.produced == r.drained_before_attach + r.drained + r.in_ring_seen + r.last.dropped
        assert 0 <= r.last.dropped < COUNTER_LIMIT and 0 <= r.in_ring_seen <= r.capacity
    gone = collector.released.sums  # released writers, folded into one row: the same identity
    assert (
        gone["produced"]
        == gone["drained_before_attach"] + gone["drained"] + gone["in_ring"] + gone["dropped_ring_full"]
    )
    assert counters["rings_quarantined"] == sum(1 for s in collector.sources if s.quarantined)
    for src in collector.sources:
        src.reader.close()
    return collector


@PROPERTY
@given(head=COUNTER, dropped=COUNTER, tail=COUNTER, capacity=st.sampled_from([2, 64, 1 << 16]),
       before=st.none() | st.tuples(COUNTER, COUNTER), elapsed_ns=st.integers(-(10**12), 10**12))  # fmt: skip
def test_check_counters_passes_only_counters_that_can_be_true(
    head, dropped, tail, capacity, before, elapsed_ns
):
    prev = RingCounters(before[0], before[1], min(before[0], tail)) if before else None
    now = RingCounters(head, dropped, tail)
    try:
        check_counters(now, capacity, prev, elapsed_ns)
    except RingCounterError as e:
        assert str(e).startswith("ring: impossible counters (") and "\n" not in str(e)
        return
    assert tail <= head <= tail + capacity and head < COUNTER_LIMIT and dropped < COUNTER_LIMIT
    if prev is not None:
        assert head >= prev.head and dropped >= prev.dropped


@PROPERTY
@given(kind=st.sampled_from(["tick", "point"]), head=COUNTER, dropped=COUNTER, tail=COUNTER)
def test_any_counters_in_a_real_ring_are_drained_or_quarantined(kind, head, dropped, tail):
    with tempfile.TemporaryDirectory() as d:
        path = make_ring(Path(d), kind)
        with open(path, "r+b") as f:
            for offset, value in ((L.OFF_HEAD, head), (L.OFF_DROPPED_FULL, dropped), (L.OFF_TAIL, tail)):
                f.seek(offset)
                f.write(struct.pack("<Q", value))
        collector = collect_without_crashing(Path(d))
        assert len(collector.sources) + collector.released.writers == 1  # held, or released and folded
        sane = tail <= head <= tail + 64 and head < COUNTER_LIMIT and dropped < COUNTER_LIMIT
        if not sane:
            (src,) = collector.sources  # a quarantined ring is kept (its file is evidence)
            assert src.quarantined and "impossible counters" in src.quarantined


@PROPERTY
@given(kind=st.sampled_from(["tick", "point"]), offset=st.integers(0, L.DATA_OFFSET - 1),
       junk=st.binary(min_size=1, max_size=256))  # fmt: skip
def test_any_header_bytes_give_a_one_line_error_or_a_ring_that_drains(kind, offset, junk):
    with tempfile.TemporaryDirectory() as d:
        path = make_ring(Path(d), kind)
        junk = junk[: L.DATA_OFFSET - offset]
        with open(path, "r+b") as f:
            f.seek(offset)
            f.write(junk)
        try:
            RingReader(path).close()
        except RingFormatError as e:
            assert str(e).startswith(f"ring {path}: ") and "\n" not in str(e)
        collect_without_crashing(Path(d))


@PROPERTY
@given(kind=st.sampled_from(["tick", "point"]), clocks=st.lists(st.sampled_from(sorted(L.CLOCK_NAMES)), min_size=3,
       max_size=3), calibration=st.binary(min_size=0, max_size=L.OFF_POINT_TABLE - L.OFF_CALIB_COUNT))  # fmt: skip
def test_any_clock_domains_and_calibration_bytes_never_crash_the_collector(kind, clocks, calibration):
    with tempfile.TemporaryDirectory() as d:
        path = make_ring(Path(d), kind)
        with open(path, "r+b") as f:
            for i, clock in enumerate(clocks):
                f.seek(L.OFF_POINT_TABLE + i * L.POINT_ENTRY_SIZE + L.POINT_NAME_SIZE + L.POINT_STAGE_SIZE)
                f.write(struct.pack("<I", clock))
            f.seek(L.OFF_CALIB_COUNT)
            f.write(calibration)
        collect_without_crashing(Path(d))


HEADER_FIELDS = [  # (offset, size) of every field a writer fills in, counters and static line alike
    (L.OFF_VERSION, 4), (L.OFF_KIND, 4), (L.OFF_RECORD_SIZE, 4), (L.OFF_N_POINTS, 4), (L.OFF_CAPACITY, 8),
    (L.OFF_CLOCK_DOMAIN, 4), (L.OFF_WRITER_PID, 4), (L.OFF_WRITER_TID, 4), (L.OFF_FLAGS, 4),
    (L.OFF_CREATED_MONO_NS, 8), (L.OFF_CREATED_REAL_NS, 8), (L.OFF_DATA_OFFSET, 8), (L.OFF_HEAD, 8),
    (L.OFF_DROPPED_FULL, 8), (L.OFF_WRITER_HEARTBEAT_NS, 8), (L.OFF_WRITER_CLOSED, 8), (L.OFF_TAIL, 8),
    (L.OFF_READER_HEARTBEAT_NS, 8), (L.OFF_READER_PID, 4), (L.OFF_CALIB_COUNT, 4),
]  # fmt: skip


@pytest.mark.parametrize(
    "field", HEADER_FIELDS, ids=lambda f: f"offset{f[0]}" if isinstance(f, tuple) else ""
)
@settings(PROPERTY, max_examples=10)
@given(kind=st.sampled_from(["tick", "point"]), closed=st.booleans(), value=EDGES | U64)
@example(kind="tick", closed=False, value=2**32 - 1)  # every field's largest value, the writer alive
@example(kind="point", closed=False, value=2**63 + 5)
def test_any_value_in_any_header_field_never_crashes_the_collector(field, kind, closed, value):
    offset, size = field
    with tempfile.TemporaryDirectory() as d:
        path = make_ring(Path(d), kind, closed)
        with open(path, "r+b") as f:
            f.seek(offset)
            f.write((value % (1 << (8 * size))).to_bytes(size, "little"))
        try:
            RingReader(path).close()
        except RingFormatError as e:
            assert str(e).startswith(f"ring {path}: ") and "\n" not in str(e)
        collect_without_crashing(Path(d))
