"""What the progress lines read after a roll: the interval's own figures, exactly the full
snapshot's, and the whole run's totals not summarized for them. Rolls are driven by the test's
``now``; nothing sleeps or times."""

from tickscope.collectors.rings.collector import Collector, monotonic_ns
from tickscope.probe import Point, TickWriter
from tickscope.reports.live import LiveView
from tickscope.reports.progress import PlainProgress

POINTS = [Point("md.rx"), Point("signal", stage="strategy"), Point("order.tx", stage="send", trade=True)]
INTERVAL_NS = 3_600 * 10**9  # no roll but those the test asks for


def write_ticks(writer: TickWriter, first: int, n: int) -> None:
    base = monotonic_ns()
    t = writer.stamps
    for seq in range(first, first + n):
        t[0], t[1], t[2] = base + seq, base + seq + 100, base + seq + 300 + seq % 7
        t = writer.commit(seq)


def test_the_interval_snapshot_is_the_full_one_without_the_whole_run_and_sums_nothing_of_it(
    ring_dir, monkeypatch
):
    summaries = []
    summary = Collector.summary
    monkeypatch.setattr(Collector, "summary", lambda self, *a: summaries.append(a) or summary(self, *a))
    writer = TickWriter(POINTS, name="progress", capacity=1 << 12)
    col = Collector(ring_dir, interval_s=INTERVAL_NS / 1e9, linger_s=0.001)
    rolls = []
    for k in range(1, 4):
        write_ticks(writer, 1000 * k, 500)
        col.poll(now_ns=col.start_ns + k * INTERVAL_NS + 10**9)  # past the linger: every trace closes
        light = col.interval_snapshot
        assert light is col.interval_snapshot  # one object per roll: a view tells a roll by it
        assert summaries == []  # the run's totals were not summarized for it
        rolls.append(light)
        full = col.snapshot
        for f in ("elapsed_s", "warmup", "tags", "trade_stages", "last", "rates", "counters", "rings",
                  "ring_errors"):  # fmt: skip
            assert getattr(light, f) == getattr(full, f), f
        assert light.last["tick_to_trade"]["count"] == 500
        assert (light.cumulative, light.by_dimension, light.attribution) == ({}, {}, None)
        assert full.cumulative["tick_to_trade"]["count"] == 500 * k
        summaries.clear()
    assert len({id(r) for r in rolls}) == 3
    col.finish()
    writer.close()


def test_the_progress_lines_ask_for_the_interval_and_the_live_view_for_the_whole_run():
    assert PlainProgress.whole_run is False and LiveView.whole_run is True
