"""The collector's poll pace: near idle at low rates, never so slow that a ring can overflow at
the fastest rate it was seen filling, and a burst after an idle stretch drained without a drop.

Nothing here sleeps or times: the pace is read from ``next_sleep`` (what the run loop would sleep)
after polls driven by the test, and every count is exact."""

import pytest

from tickscope.collectors.rings.collector import Collector, monotonic_ns
from tickscope.collectors.run.claim import ProfileError
from tickscope.collectors.run.engine import POLL_MAX_ENV, POLL_MAX_S, RunPlan, poll_ceiling
from tickscope.probe import Point, TickWriter

CAPACITY = 1 << 10
POINTS = [Point("md.rx"), Point("signal", stage="strategy"), Point("order.tx", stage="send", trade=True)]


def write_ticks(writer: TickWriter, first: int, n: int) -> None:
    base = monotonic_ns()
    t = writer.stamps
    for seq in range(first, first + n):
        t[0], t[1], t[2] = base + seq, base + seq + 100, base + seq + 300
        t = writer.commit(seq)


def idle_pace(col: Collector, ceiling_s: float, polls: int = 40) -> float:
    """Poll an empty ring ``polls`` times: the sleep an idle collector has come to (doubling from
    1 ms, 40 polls pass any ceiling here)."""
    sleep = 0.001
    for _ in range(polls):
        assert col.poll() == 0
        sleep = col.next_sleep(sleep, ceiling_s=ceiling_s)
    return sleep


def test_an_idle_collector_backs_off_within_the_ring_bound_and_drains_a_full_ring_burst_exactly(ring_dir):
    writer = TickWriter(POINTS, name="burst", capacity=CAPACITY)
    col = Collector(ring_dir, interval_s=3600)
    # A ring never written to bounds nothing: the pace backs off to the ceiling, past the
    # 20 ms it stopped at before.
    assert idle_pace(col, ceiling_s=0.25) == 0.25
    write_ticks(writer, 1, CAPACITY // 2)
    assert col.poll() == CAPACITY // 2
    (src,) = col.sources
    assert src.peak_rate > 0  # the fastest this ring was seen filling, whatever it was on this host
    # linger does not bound it (linger / 5 did: 0.63-0.70x the collector's CPU at 20 k msgs/s without)
    assert Collector(ring_dir, interval_s=3600, linger_s=0.25).next_sleep(1.0, ceiling_s=0.25) == 0.25
    bound = CAPACITY * col.PACE_FILL / src.peak_rate
    assert col.next_sleep(0.25, ceiling_s=0.25) <= bound
    # Idle again: back off, but never past what the ring holds at its peak rate (which decays).
    pace = idle_pace(col, ceiling_s=0.25)
    assert pace == pytest.approx(min(0.25, col.safe_sleep_s()), rel=1e-2)
    # The burst after the idle stretch: a whole ring at once. The ring holds it; the poll finds
    # it full and the next one comes at once.
    write_ticks(writer, CAPACITY // 2 + 1, CAPACITY)
    assert col.poll() == CAPACITY
    assert col.next_sleep(pace, ceiling_s=0.25) == 0.0
    col.finish()
    c = col.counter_dict()
    assert c["dropped_ring_full"] == 0 and c["produced"] == c["drained"] == CAPACITY * 3 // 2
    assert c["traces_complete"] == CAPACITY * 3 // 2 and c["traces_incomplete"] == 0
    assert col.summary()["tick_to_trade"]["count"] == CAPACITY * 3 // 2
    writer.close()


def test_the_poll_ceiling_is_the_environment_s_or_one_line_saying_what_to_give(monkeypatch):
    plan = RunPlan(name="x")
    monkeypatch.delenv(POLL_MAX_ENV, raising=False)
    assert poll_ceiling(plan) == POLL_MAX_S
    monkeypatch.setenv(POLL_MAX_ENV, "0.02")  # the ceiling before: the side-by-side benchmark
    assert poll_ceiling(plan) == 0.02
    for bad in ("", "fast", "0", "-1", "11"):
        monkeypatch.setenv(POLL_MAX_ENV, bad)
        with pytest.raises(ProfileError, match=f"{POLL_MAX_ENV}=.*seconds above 0"):
            poll_ceiling(plan)


class IntervalLines:
    """A view that shows closed intervals only (as ``PlainProgress``): ``refresh_s`` None."""

    whole_run, refresh_s = False, None

    def __init__(self):
        self.shown = []

    def start(self):
        pass

    def update(self, state, side, elapsed_s, duration_s):
        self.shown.append(state)

    def stop(self):
        pass


@pytest.mark.parametrize("refresh_s", [None, 0.05, "no view"])
def test_only_a_redrawing_view_paces_the_polls_and_an_interval_view_sees_each_interval_once(
    ring_dir, monkeypatch, refresh_s
):
    """The progress lines used to cap every sleep at the live view's 0.2 s redraw: ~5 polls a
    second however slow the rings, for a line a second. Now a view says how often it redraws.
    A run without a view has no snapshot built at its rolls (summaries of every total), only the
    one its end reports from."""
    from tickscope.collectors.run.engine import run

    ceilings, built = [], []
    next_sleep, build = Collector.next_sleep, Collector._build_snapshot

    def recorded(self, current_s, floor_s=0.001, ceiling_s=0.25):
        ceilings.append(ceiling_s)
        return next_sleep(self, current_s, floor_s, ceiling_s)

    def counted(self, *args, **kwargs):
        built.append(kwargs.get("whole_run", True))
        return build(self, *args, **kwargs)

    monkeypatch.setattr(Collector, "next_sleep", recorded)
    monkeypatch.setattr(Collector, "_build_snapshot", counted)
    writer = TickWriter(POINTS, name="lines", capacity=CAPACITY)
    write_ticks(writer, 0, 10)
    view = None if refresh_s == "no view" else IntervalLines()
    if view is not None:
        view.refresh_s = refresh_s
    result = run(RunPlan("s", ring_dir=ring_dir, save=False, view=view, duration_s=2.5, interval_s=0.5,
                         poll_max_s=1.0))  # fmt: skip
    writer.close()
    assert result.exit_code == 0 and ceilings
    assert set(ceilings) == ({0.05} if refresh_s == 0.05 else {1.0})
    if refresh_s is None:  # one update per interval closed, each a new one, of the interval's figures
        assert len(view.shown) == len({id(s) for s in view.shown}) >= 1
        assert [s.elapsed_s for s in view.shown] == sorted({s.elapsed_s for s in view.shown})
        assert False in built and built.count(True) <= 1
    if view is None:
        assert built.count(True) <= 1 and False not in built


def test_an_interval_view_is_updated_at_most_every_update_gap_however_short_the_intervals(ring_dir):
    """At 10 ms intervals a line per interval closed was 100 lines a second: a pipe nobody read
    until the end filled and the run blocked writing to it (test_segments' long run)."""
    from tickscope.collectors.run.engine import UPDATE_GAP_S, run

    writer = TickWriter(POINTS, name="short", capacity=CAPACITY)
    write_ticks(writer, 0, 10)
    view = IntervalLines()
    duration_s = 2.0
    result = run(
        RunPlan("s", ring_dir=ring_dir, save=False, view=view, duration_s=duration_s, interval_s=0.01)
    )
    writer.close()
    assert result.exit_code == 0 and view.shown
    assert len(view.shown) <= duration_s / UPDATE_GAP_S + 1
