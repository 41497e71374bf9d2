"""The ring: what a writer publishes is what the reader drains, and every loss is counted."""

import os
import random
import stat
import struct
import subprocess
import sys

import numpy as np
import pytest

from tickscope.collectors.rings.reader import RingFormatError, RingReader, find_rings
from tickscope.probe import Point, PointWriter, TickWriter
from tickscope.probe import layout as L


def test_tick_writer_records_are_drained_exactly(ring_dir):
    w = TickWriter(["a", "b", "c"], capacity=64)
    r = RingReader(w.path)
    t = w.stamps
    for seq in range(1, 41):
        t[0], t[1] = seq * 10, seq * 10 + 1
        if seq % 2:
            t[2] = seq * 10 + 2
        t = w.commit(seq, dims=seq * 7)
    got = r.drain()
    assert got.size == 40
    assert list(got["trace"]) == list(range(1, 41))
    assert list(got["dims"]) == [s * 7 for s in range(1, 41)]
    assert list(got["ts"][:, 0]) == [s * 10 for s in range(1, 41)]
    # A point not stamped in a tick reads as 0, even though the slot was used before.
    assert list(got["ts"][:4, 2]) == [12, 0, 32, 0]


def test_tick_slots_come_back_clean_after_wrapping(ring_dir):
    w = TickWriter(["a", "b"], capacity=4)
    r = RingReader(w.path)
    t = w.stamps
    for seq in range(1, 5):
        t[0], t[1] = 1, 2
        t = w.commit(seq)
    r.drain()
    for seq in range(5, 9):  # same physical slots, second lap: only "a" stamped
        t[0] = 5
        t = w.commit(seq)
    got = r.drain()
    assert list(got["ts"][:, 1]) == [0, 0, 0, 0]


def test_full_ring_drops_newest_and_counts_every_drop(ring_dir):
    w = TickWriter(["a"], capacity=8)
    r = RingReader(w.path)
    t = w.stamps
    for seq in range(1, 21):
        t[0] = seq
        t = w.commit(seq)
    assert w.dropped == 12 and r.dropped_full == 12
    got = r.drain()
    assert list(got["trace"]) == list(range(1, 9))  # the oldest survive: drop-newest
    assert r.produced == got.size + r.dropped_full == 20
    # Once drained, the writer has room again.
    t[0] = 99
    t = w.commit(99, dims=7)
    got = r.drain()
    assert list(got["trace"]) == [99] and list(got["ts"][:, 0]) == [99] and list(got["dims"]) == [7]
    t[0] = 100  # and the tick after it starts on a clean slot of the ring
    w.commit(100)
    assert list(r.drain()["ts"][:, 0]) == [100]


def test_point_writer_records_every_field(ring_dir):
    w = PointWriter(["x", "y"], capacity=16)
    r = RingReader(w.path)
    w.record(1, 77, ts=123, dims=5)
    w.record(0, 78)
    got = r.drain()
    assert got.dtype.itemsize == L.POINT_RECORD_SIZE == 32
    assert (got[0]["ts"], got[0]["trace"], got[0]["point"], got[0]["dims"]) == (123, 77, 1, 5)
    assert got[0]["thread"] == got[1]["thread"] != 0
    assert got[1]["ts"] > 0
    with pytest.raises(IndexError):
        w.record(2, 1)


def test_find_rings_lists_the_rings_not_known_yet_as_paths(ring_dir):
    """The collector lists its directory at every poll and asks only for the rings it does not
    read yet (by path string): the same Paths as a full listing, however the directory is named."""
    a, b = TickWriter(["x"], capacity=8, name="a"), TickWriter(["x"], capacity=8, name="b")
    (ring_dir / "notes.txt").write_text("not a ring")
    assert find_rings(ring_dir) == sorted([a.path, b.path])
    for spelled in (ring_dir, str(ring_dir) + "/", str(ring_dir) + "/."):
        assert find_rings(spelled, {str(a.path)}) == [b.path]
        assert find_rings(spelled, {str(a.path), str(b.path)}) == []
    assert find_rings(ring_dir / "missing") == [] and find_rings(ring_dir / "notes.txt") == []
    a.close()
    b.close()


def test_ring_file_is_private_and_describes_itself(ring_dir):
    w = TickWriter(
        [Point("md.rx", clock="realtime"), Point("order.tx", stage="send", trade=True)], name="trader"
    )
    assert stat.S_IMODE(os.stat(w.path).st_mode) == 0o600
    assert w.path.parent == ring_dir and find_rings(ring_dir) == [w.path]
    r = RingReader(w.path)
    assert (r.kind, r.n_points, r.writer_pid, r.writer_name) == (L.KIND_TICK, 2, os.getpid(), "trader")
    assert (
        r.points[0].clock == L.CLOCK_REALTIME
        and r.points[1].stage == "send"
        and r.points[1].flags & L.POINT_TRADE
    )
    assert r.calibration_pairs(), "a writer anchors its clocks at creation"


def test_head_and_tail_live_on_separate_cache_line_pairs():
    assert L.OFF_TAIL - L.OFF_HEAD >= 128 and L.OFF_HEAD >= 128
    assert L.OFF_POINT_TABLE >= L.OFF_CALIB_ENTRIES + L.CALIB_SLOTS * L.CALIB_ENTRY.size


@pytest.mark.parametrize(
    "corrupt, message",
    [
        (lambda mm: struct.pack_into("<Q", mm, L.OFF_MAGIC, 0xDEADBEEF), "bad magic"),
        (lambda mm: struct.pack_into("<I", mm, L.OFF_VERSION, 99), "layout version 99"),
        (lambda mm: struct.pack_into("<I", mm, L.OFF_RECORD_SIZE, 40), "record size 40"),
        (lambda mm: struct.pack_into("<Q", mm, L.OFF_CAPACITY, 12), "capacity"),
    ],
)
def test_corrupted_headers_are_rejected_with_one_line(ring_dir, corrupt, message):
    import mmap

    w = TickWriter(["a"], capacity=8)
    with open(w.path, "r+b") as f, mmap.mmap(f.fileno(), 0) as mm:
        corrupt(mm)
    with pytest.raises(RingFormatError) as e:
        RingReader(w.path)
    assert message in str(e.value) and "\n" not in str(e.value) and str(w.path) in str(e.value)


def test_truncated_ring_is_rejected(ring_dir):
    w = TickWriter(["a"], capacity=1024)
    os.truncate(w.path, L.DATA_OFFSET + 100)
    with pytest.raises(RingFormatError, match="truncated"):
        RingReader(w.path)
    os.truncate(w.path, 100)
    with pytest.raises(RingFormatError, match="truncated header"):
        RingReader(w.path)


def test_corrupted_counters_are_detected_on_drain(ring_dir):
    w = TickWriter(["a"], capacity=8)
    r = RingReader(w.path)
    w._head[0] = 1000  # head beyond tail + capacity: impossible for a sane writer
    with pytest.raises(RingFormatError, match="impossible counters"):
        r.drain()


def test_reader_tells_a_dead_writer_from_a_quiet_one(ring_dir):
    code = (
        "from tickscope.probe import TickWriter\n"
        "w = TickWriter(['a'], capacity=8)\n"
        "t = w.stamps; t[0] = 1; w.commit(1)\n"
        "import os; os._exit(0)  # dies without close()\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, env=dict(os.environ))
    (path,) = find_rings(ring_dir)
    r = RingReader(path)
    assert not r.writer_alive() and not r.writer_closed
    assert r.drain().size == 1  # what a dead writer left behind is still collected

    live = TickWriter(["a"], capacity=8)
    assert RingReader(live.path).writer_alive()
    live.close()
    assert not RingReader(live.path).writer_alive()


def test_writer_sees_whether_a_collector_drains(ring_dir):
    w = TickWriter(["a"], capacity=8)
    assert not w.collector_alive()
    RingReader(w.path).drain()
    assert w.collector_alive()


def test_probe_package_imports_without_numpy_rich_or_typer():
    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('numpy', 'rich', 'typer', 'hdrh'): raise ImportError(name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "import tickscope.probe\n"
        "from tickscope.probe import TickWriter, PointWriter, Point\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.strip() == "ok", out.stderr


def test_bad_point_declarations_are_refused(ring_dir):
    with pytest.raises(ValueError, match="unique"):
        TickWriter(["a", "a"])
    with pytest.raises(ValueError, match="power of 2"):
        TickWriter(["a"], capacity=100)
    with pytest.raises(ValueError, match="clock"):
        TickWriter([Point("a", clock="sundial")])
    with pytest.raises(ValueError, match="at most"):
        TickWriter([f"p{i}" for i in range(L.MAX_POINTS + 1)])


def test_drain_of_a_wrapped_range_keeps_order(ring_dir):
    w = TickWriter(["a"], capacity=8)
    r = RingReader(w.path)
    t = w.stamps
    for seq in range(1, 7):
        t[0] = seq
        t = w.commit(seq)
    r.drain()
    for seq in range(7, 14):  # crosses the end of the ring
        t[0] = seq
        t = w.commit(seq)
    assert np.array_equal(r.drain()["trace"], np.arange(7, 14))


@pytest.mark.parametrize("capacity", [2, 4, 16])
def test_tick_writer_matches_a_model_of_the_ring_under_random_drains(ring_dir, capacity):
    """A tick is kept exactly when the ring has room at its commit; kept ticks arrive whole, in order."""
    rng = random.Random(capacity)
    w = TickWriter(["a", "b", "c"], capacity=capacity)
    r = RingReader(w.path)
    expected, got, drained, dropped = [], [], 0, 0
    t = w.stamps
    for seq in range(1, 3000):
        if rng.random() < 0.3:
            batch = r.drain(rng.randint(1, capacity))
            got += [
                (int(b["trace"]), [int(x) for x in b["ts"]], int(b["dims"]), int(b["leg"])) for b in batch
            ]
            drained += batch.size
        t[0] = seq
        if seq % 3:
            t[2] = seq * 10  # "b" never stamped, "c" on two ticks of three
        dims, leg = rng.choice([0, seq]), rng.choice([0, seq % 7])
        if len(expected) - drained < capacity:
            expected.append((seq, [seq, 0, seq * 10 if seq % 3 else 0], dims, leg))
        else:
            dropped += 1
        t = w.commit_leg(seq, leg, dims) if leg else w.commit(seq, dims)
    got += [(int(b["trace"]), [int(x) for x in b["ts"]], int(b["dims"]), int(b["leg"])) for b in r.drain()]
    assert got == expected
    assert w.dropped == r.dropped_full == dropped and w.written == len(expected)


def test_a_calibration_pair_is_the_narrowest_bracket_read():
    from tickscope.probe.clock import PAIR_NARROW_NS, PAIR_TRIES, clock_pair, tightest

    # (raw0, mono, real, raw1): the first sequence was preempted after its RAW read, the third
    # ran through; none is under PAIR_NARROW_NS, so all are read.
    preempted = [(1_000, 185_000, 189_000, 181_000), (2_000, 6_000, 10_000, 5_400),
                 (3_000, 7_000, 11_000, 5_100), (4_000, 8_000, 12_000, 7_300),
                 (5_000, 9_000, 13_000, 8_200)]  # fmt: skip
    assert PAIR_TRIES == len(preempted) and PAIR_NARROW_NS == 1_000
    reads = iter(preempted)
    assert tightest(lambda: next(reads)) == (0, 3_000, 7_000, 11_000)
    assert next(reads, None) is None, "every sequence read"
    reads = iter([*preempted[:2], (6_000, 6_100, 6_200, 6_300), (7_000, 7_100, 7_200, 7_250)])
    assert tightest(lambda: next(reads)) == (0, 6_000, 6_100, 6_200)
    assert next(reads) == (7_000, 7_100, 7_200, 7_250), "the first narrow bracket ends the tries"
    first, second = clock_pair(), clock_pair()
    assert first[0] == 0 and second[1] > first[1] and second[2] > first[2]


def test_the_collector_chooses_its_own_pairs_by_the_writers_rule(monkeypatch):
    """``host_tsc.collector_pair`` keeps the sequence ``probe.clock.narrowest`` keeps, each closed
    by a third RAW read (a preemption before MONOTONIC or REALTIME widens it too), and takes the
    TSC's time and MONOTONIC at the midpoint of the two RAW reads around the TSC read."""
    from tickscope.collectors.rings import host_tsc
    from tickscope.probe.clock import narrowest

    # (raw0, tsc, raw1, mono, real, raw2): the first preempted before REALTIME, the second narrow
    reads = iter([(1_000, 10, 1_100, 5_100, 9_100, 181_000), (2_000, 20, 2_100, 6_100, 10_100, 2_300),
                  (3_000, 30, 3_100, 7_100, 11_100, 3_200)])  # fmt: skip
    assert narrowest(lambda: next(reads), 3) == (2_000, 20, 2_100, 6_100, 10_100, 2_300)
    assert next(reads)[0] == 3_000, "the first narrow bracket ends the tries"
    chosen = (2_000, 20, 2_100, 6_100, 10_100, 2_300)
    monkeypatch.setattr(host_tsc, "narrowest", lambda read, tries: chosen)
    assert host_tsc.collector_pair(lambda: 0) == (20, 2_050, 6_050, 10_100)
