"""The live view in a real terminal (tmux), its plain fallback, and its widgets."""

import itertools
import json
import re
import shlex
import subprocess
import sys
import time
import uuid

import pytest
from rich.console import Console

from conftest import needs_tool
from support import PROGRAMS, SUBJECT, free_port, held_files
from support.cli import CLI, run_cli, start_cli
from tickscope.collectors.rings.released import RELEASED_KEPT
from tickscope.collectors.session import Session, Snapshot
from tickscope.reports.attribution import TailBars, cells
from tickscope.reports.live import Sparkline
from tickscope.reports.live import render as dashboard_of

FOREVER = [*SUBJECT, "0", "--forever", "--rate", "20000", "--no-order-every", "3"]  # ticks until stopped


def tail(traces, threshold, feed, strategy):
    total = feed + strategy
    stages = {
        "feed": {"mean_ns": feed, "mean_share": feed / total, "median_share": feed / total},
        "strategy": {"mean_ns": strategy, "mean_share": strategy / total, "median_share": strategy / total},
    }
    return {"traces": traces, "threshold_ns": threshold, "percentile_ns": threshold, "mean_tick_to_trade_ns": total,
            "median": {"method": "exact", "samples": traces}, "stages": stages}  # fmt: skip


ATTRIBUTION = {"population": "orders", "traces": 100, "stages": ["feed", "strategy"],
               "tails": {"p50": tail(50, 4000, 1000, 3000), "p99": tail(1, 20000, 5000, 15000)}}  # fmt: skip


def state():
    s = {"count": 100, "p50": 1000, "p90": 2000, "p99": 5000, "p99_9": 8000, "max": 9000}
    return Snapshot(attribution=ATTRIBUTION, elapsed_s=3.0, tags=["feed", "strategy", "tick_to_trade"], trade_stages=["feed", "strategy"],
                     last={"feed": s, "strategy": {**s, "p50": 3000, "p99": 15000}, "tick_to_trade": s},
                     cumulative={"feed": s}, rates={"feed": 20000.0}, p99_history={"tick_to_trade": [5, 9, 3, 7]},
                     counters={"produced": 10, "drained": 10, "dropped_ring_full": 0}, rings=1)  # fmt: skip


def render(renderable, width=80):
    c = Console(record=True, width=width, color_system=None)
    c.print(renderable)
    return c.export_text()


def test_breakdown_shows_each_components_share_in_the_tail_traces_and_names_them():
    text = render(TailBars(ATTRIBUTION, width=60))
    assert "feed 25%/25%" in text and "strategy 75%/75%" in text  # p50 1000:3000, p99 5000:15000
    assert "of 100 orders" in text and "p50: 50 traces ≥ 4µs" in text and "p99: 1 trace ≥ 20µs" in text


def test_sparkline_and_dashboard_fit_small_and_large_terminals():
    assert "▁" in render(Sparkline([1, 5, 9, 2], 20)) and "█" in render(Sparkline([1, 5, 9, 2], 20))
    for w, h in ((80, 24), (160, 48), (40, 10)):
        text = render(dashboard_of(state(), {"perf": {"summary": "cpu 99%"}}, 3.0, 10.0, w, h), width=w)
        assert "elapsed" in text and all(len(line) <= w for line in text.splitlines())
    assert "p99.9" in render(dashboard_of(state(), {}, 3.0, None, 160, 48), width=160)


def test_a_short_terminal_keeps_the_counters_and_the_capture_line_in_view():
    # The bundled pipeline with --capture: 11 probe rows and 3 wire rows. A terminal crops the
    # bottom, where the drop counters and the capture's matched/unmatched are: the breakdown
    # (then the sparkline) makes way for them instead.
    row = {"count": 100, "p50": 1000, "p90": 2000, "p99": 5000, "p99_9": 8000, "max": 9000}
    stages = ["wire_to_read", "feed", "book", "strategy", "risk", "leg_wait", "encode", "send", "order_rtt"]
    wire = ["wire_to_wire", "md.rx-wire.md", "wire.order-order.tx"]
    tags = [*stages, "tick_to_trade", "tick_to_decision", *wire]
    live = Snapshot(elapsed_s=3.0, tags=tags[:-3], side_tags=wire, trade_stages=stages[:8],
                     last={t: row for t in tags}, cumulative={t: row for t in tags}, rates={t: 5000.0 for t in tags},
                     p99_history={"tick_to_trade": [5, 9, 3, 7]}, rings=2,
                     counters={"produced": 25092, "drained": 24945, "dropped_ring_full": 0, "in_ring": 147,
                               "orders_sent": 802, "orders_acked": 802})  # fmt: skip
    side = {"capture": {"summary": "22,864 packets, 21,989 md msgs, 827 orders, 827 matched, 0 unmatched"}}
    for w, h in ((80, 24), (120, 30)):
        text = render(dashboard_of(live, side, 3.0, 10.0, w, h), width=w)
        assert len(text.rstrip("\n").splitlines()) <= h, (w, h, text)
        for word in (
            "elapsed",
            "wire.order-order.tx",
            "records: produced",
            "orders: 802 sent",
            "827 matched",
        ):
            assert word in text, (w, h, word, text)
    tall = render(dashboard_of(live, side, 3.0, 10.0, 120, 48), width=120)
    assert "tick-to-trade breakdown" in tall and "t2t p99" in tall, (
        "a terminal that holds everything shows it"
    )


def tmux(*args):
    return subprocess.run(["tmux", *args], capture_output=True, text=True)


def run_ended(out) -> bool:
    """The session's meta.json says the run ended (read as written, atomically; a session still
    running may hold no interval yet, which ``Session.load`` refuses)."""
    try:
        return json.loads((out / "meta.json").read_text()).get("status") not in (None, "running")
    except (OSError, ValueError):
        return False


@needs_tool("tmux", install="apt-get install tmux")
@pytest.mark.parametrize("size", [(120, 40), (80, 24), (40, 10)])
def test_profile_live_in_a_real_terminal(tmp_path, size):
    name = f"ts-{uuid.uuid4().hex[:8]}"
    out = tmp_path / "s"
    cmd = f"{sys.executable} -m tickscope.main profile --duration 6s --no-perf --out {out} -- {shlex.join(FOREVER)}; sleep 20"
    tmux("new-session", "-d", "-x", str(size[0]), "-y", str(size[1]), "-s", name, cmd)
    try:
        # Waits for what the screen shows (a loaded host starts the run late), never a fixed sleep.
        deadline = time.monotonic() + 60
        first = screen_until(name, "elapsed", deadline).string
        while (second := tmux("capture-pane", "-p", "-t", name).stdout) == first:
            assert time.monotonic() < deadline, "the screen does not update"
            time.sleep(0.3)
        if size[1] >= 24:  # the stage rows come with the first closed interval
            words = ("stages", "tick_to_trade", "breakdown", "records: produced", "strategy")
            second = screen_until(
                name, "".join(f"(?=[\\s\\S]*{re.escape(w)})" for w in words), deadline
            ).string
        while not run_ended(out):
            assert time.monotonic() < deadline, "profile did not finish"
            time.sleep(0.5)
    finally:
        tmux("kill-session", "-t", name)
    assert first != second, "the screen updates"
    assert "elapsed" in first and "Traceback" not in first + second
    if size[1] >= 24:
        for word in ("stages", "tick_to_trade", "breakdown", "records: produced", "strategy"):
            assert word in second, (word, second)
    s = Session.load(out)
    assert s.meta["counters"]["dropped_ring_full"] == 0, "the TUI costs the collector no drops"


@needs_tool("tmux", install="apt-get install tmux")
def test_live_by_venue_shows_the_worst_venue_first_in_a_real_terminal(tmp_path):
    """tests/programs/dims_subject.py with XNAS's sends 40 us late: under --live-by venue the
    screen ranks XNAS above BATS by tick-to-trade p99, both named with their order counts."""
    name = f"ts-{uuid.uuid4().hex[:8]}"
    subject = [sys.executable, str(PROGRAMS / "dims_subject.py"), "6000", "--slow", "XNAS=40", "--gap-us", "1000",
               "--truth", str(tmp_path / "t.txt")]  # fmt: skip
    cmd = (f"{sys.executable} -m tickscope.main profile --live --live-by venue --no-perf --no-hiccup "
           f"--interval 200ms --out {tmp_path / 's'} -- {shlex.join(subject)}; echo profile exited; sleep 20")  # fmt: skip
    tmux("new-session", "-d", "-x", "120", "-y", "40", "-s", name, cmd)
    try:
        deadline, screen = time.monotonic() + 60, ""  # a hang guard: the run takes ~6 s
        # the table names its population: the orders of each value (a leg's venue labels orders only)
        while not re.search(r"worst venue by t2t p99 over each value's orders.*\n\s+XNAS .*orders\n\s+BATS .*orders",
                            screen):  # fmt: skip
            assert time.monotonic() < deadline, screen
            time.sleep(0.3)
            screen = tmux("capture-pane", "-p", "-t", name).stdout
        # The run ends by itself, rings removed, before the pane goes (killed mid-run, it would leave them).
        while "profile exited" not in tmux("capture-pane", "-p", "-t", name).stdout:
            assert time.monotonic() < deadline, "profile did not finish"
            time.sleep(0.5)
    finally:
        tmux("kill-session", "-t", name)
    assert "Traceback" not in screen
    # The subject's spans are exact (XNAS 42-47 us, BATS 8 us), whatever the host's load.
    xnas, bats = (re.search(rf"{v}\s+p99\s+([\d.]+)µs", screen) for v in ("XNAS", "BATS"))
    assert xnas and bats and float(xnas.group(1)) > float(bats.group(1)), screen


def screen_until(name: str, pattern: str, deadline: float) -> re.Match:
    """Wait for the pane to show ``pattern`` (the deadline is a hang guard only)."""
    while not (m := re.search(pattern, screen := tmux("capture-pane", "-p", "-t", name).stdout)):
        assert time.monotonic() < deadline, (pattern, screen)
        time.sleep(0.3)
    return m


@needs_tool("tmux", install="apt-get install tmux")
def test_the_d_key_cycles_the_declared_dimensions_in_a_real_terminal(tmp_path):
    """No --live-by: the footer names the declared dimensions; each d shows the next one's worst
    values (XNAS's sends are 40 us late: it ranks first under venue), then none; Ctrl-C still stops
    and saves with the keys read."""
    name = f"ts-{uuid.uuid4().hex[:8]}"
    subject = [sys.executable, str(PROGRAMS / "dims_subject.py"), "0", "--forever", "--rate", "500",
               "--slow", "XNAS=40"]  # fmt: skip
    cmd = (f"{sys.executable} -m tickscope.main profile --live --no-perf --no-hiccup --interval 200ms "
           f"--duration 300s --out {tmp_path / 's'} -- {shlex.join(subject)}; echo profile exited; sleep 20")  # fmt: skip
    tmux("new-session", "-d", "-x", "120", "-y", "40", "-s", name, cmd)
    try:
        deadline = time.monotonic() + 120  # a hang guard: every wait is for what the screen shows
        footer = r"d: next dimension \(showing (\S+); declared: ([^)]*)\)"
        declared = screen_until(name, footer, deadline).group(2).split(", ")
        assert "venue" in declared and "worst" not in tmux("capture-pane", "-p", "-t", name).stdout
        for shown in [*declared, "none"]:
            tmux("send-keys", "-t", name, "d")
            screen_until(name, rf"showing {re.escape(shown)};", deadline)
            if shown == "venue":
                screen_until(name, r"worst venue by t2t p99.*\n\s+XNAS .*orders\n\s+BATS .*orders", deadline)
        assert "worst" not in tmux("capture-pane", "-p", "-t", name).stdout  # none: the values are gone
        tmux("send-keys", "-t", name, "C-c")
        screen_until(name, "profile exited", deadline)
    finally:
        tmux("kill-session", "-t", name)
    s = Session.load(tmp_path / "s")
    assert s.meta["status"] == "interrupted" and s.total("tick_to_trade").total_count > 0, s.meta["status"]


def test_piped_stdout_gets_plain_progress_lines(tmp_path):
    out = run_cli("profile", "--duration", "3s", "--no-perf", "--no-hiccup", "--out", str(tmp_path / "s"), "--",
                  *FOREVER)  # fmt: skip
    assert out.returncode == 0, out.stderr
    progress = [line for line in out.stdout.splitlines() if line.startswith("[")]
    assert len(progress) >= 2 and "traces/s" in progress[0] and "\x1b[" not in out.stdout.split("session")[0]


def test_a_reader_that_goes_away_does_not_end_the_run(tmp_path):
    """`tickscope profile --duration 1h | head -1`: the second progress line met a broken pipe,
    which ended the session after a second or two, marked complete, exit 0."""
    import os

    quiet_subject = (  # prints nothing: the target shares tickscope's stdout, and its pipe breaks too
        "import time\nfrom time import perf_counter_ns\nfrom tickscope.probe import Point, TickWriter\n"
        "probe = TickWriter([Point('md.rx'), Point('order.tx', stage='send')], name='quiet')\n"
        "t, seq = probe.stamps, 0\ntry:\n  while True:\n    seq += 1\n    t[0] = perf_counter_ns()\n"
        "    t[1] = perf_counter_ns()\n    t = probe.commit(seq)\n    time.sleep(0.001)\n"
        "except KeyboardInterrupt:\n  probe.close()\n"
    )
    r, w = os.pipe()
    proc = subprocess.Popen([*CLI, "profile", "--duration", "6s", "--no-perf",
                             "--no-hiccup", "--out", str(tmp_path / "s"), "--", sys.executable, "-c", quiet_subject],
                            stdout=w, stderr=subprocess.PIPE, text=True)  # fmt: skip
    os.close(w)
    with os.fdopen(r) as reader:
        reader.readline()  # head -1: one progress line, then the reader is gone
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0 and "Traceback" not in err, err
    s = Session.load(tmp_path / "s")
    assert s.meta["status"] == "complete"
    # 6 one-second intervals for the whole --duration (the broken pipe ended it after about 2)
    assert len(s.intervals["tick_to_trade"]) >= 5, len(s.intervals["tick_to_trade"])


def test_term_dumb_falls_back_to_plain_lines(tmp_path):
    out = run_cli("profile", "--live", "--duration", "2s", "--no-perf", "--no-hiccup", "--out", str(tmp_path / "s"),
                  "--", *FOREVER, env={"TERM": "dumb"})  # fmt: skip
    assert out.returncode == 0 and "traces/s" in out.stdout


def test_live_attaches_to_running_rings_and_saves(tmp_path):
    rings = tmp_path / "rings"
    rings.mkdir()
    subject = subprocess.Popen(FOREVER, env={**__import__("os").environ, "TICKSCOPE_RING_DIR": str(rings)})
    try:
        time.sleep(1.0)
        out = run_cli("live", str(rings), "--duration", "2s", "--out", str(tmp_path / "s"))
    finally:
        subject.terminate()
        subject.wait()
    assert out.returncode == 0, out.stderr
    assert Session.load(tmp_path / "s").summary()["tick_to_trade"]["count"] > 1000


def test_a_live_session_carries_the_run_metadata_a_profile_session_has(tmp_path):
    """tool, tool_version, git sha, the host's facts and the doctor's quick checks: one engine,
    one meta.json, whichever command made the session."""
    import os

    rings = tmp_path / "rings"
    rings.mkdir()
    subject = subprocess.Popen(FOREVER, env={**os.environ, "TICKSCOPE_RING_DIR": str(rings)})
    try:
        out = run_cli("live", str(rings), "--duration", "1s", "--no-live", "--out", str(tmp_path / "s"))
    finally:
        subject.terminate()
        subject.wait()
    assert out.returncode == 0, out.stderr
    meta = Session.load(tmp_path / "s").meta
    assert meta["tool"] == "tickscope" and meta["tool_version"] and "git_sha" in meta
    assert meta["host"]["hostname"] and meta["doctor"] and meta["command"] == "tickscope live"
    assert meta["status"] == "complete" and meta["collector_cpu"]["seconds"] >= 0


def test_live_with_a_missing_ring_dir_is_one_line(tmp_path):
    out = run_cli("live", str(tmp_path / "nope"))
    assert out.returncode == 2 and "no ring directory" in out.stderr and "Traceback" not in out.stderr


def test_breakdown_bar_fills_its_width_exactly_and_keeps_small_stages_visible():
    for shares in ([0.9, 0.001, 0.001, 0.098], [1 / 3] * 3, [0.5, 0.5, 0.0], [0.97] + [0.005] * 6):
        n = cells(shares, 40)
        assert sum(n) == 40 and all(c >= 1 for c, s in zip(n, shares, strict=True) if s > 0)


def test_live_serves_prometheus_and_its_final_scrape_holds_the_saved_totals(tmp_path):
    """`live --prometheus`: the same exporter as profile's; the last scrape (the final totals,
    served until scraped) counts exactly what the saved session counts."""
    import os
    import re
    import urllib.request

    rings = tmp_path / "rings"
    rings.mkdir()
    port = free_port()
    subject = subprocess.Popen(FOREVER, env={**os.environ, "TICKSCOPE_RING_DIR": str(rings)})
    live = start_cli("live", str(rings), "--duration", "2s", "--no-live", "--out", str(tmp_path / "s"),
                     "--prometheus", f"127.0.0.1:{port}", "--prometheus-linger", "60s", columns=False)  # fmt: skip
    last = None
    try:
        deadline = time.monotonic() + 120  # hang guard only
        while live.poll() is None and time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                    last = r.read().decode()
            except OSError:
                pass
            time.sleep(0.2)
        out, err = live.communicate(timeout=60)
    finally:
        subject.terminate()
        subject.wait()
        live.kill()
    assert live.returncode == 0, err
    count = re.search(r'tickscope_latency_seconds_count\{[^}]*stage="tick_to_trade"[^}]*\} (\d+)', last or "")
    assert count, last
    assert int(count.group(1)) == Session.load(tmp_path / "s").summary()["tick_to_trade"]["count"] > 0


def test_live_never_overwrites_a_session(tmp_path):
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "meta.json").write_text('{"status": "complete"}')
    rings = tmp_path / "rings"
    rings.mkdir()
    out = run_cli("live", str(rings), "--duration", "1s", "--no-live", "--out", str(tmp_path / "s"))
    assert out.returncode == 2 and "already holds a session" in out.stderr and "--force" in out.stderr
    assert "Traceback" not in out.stderr


def test_the_live_view_accounts_for_every_trace_seen_and_the_ones_still_open():
    live = state()
    live.counters = {"produced": 10, "drained": 10, "dropped_ring_full": 0, "in_ring": 0, "traces_seen": 1000,
                     "traces_complete": 990, "traces_clock_skew": 7, "late_beyond_horizon": 3, "traces_pending": 12}  # fmt: skip
    text = render(dashboard_of(live, {}, 3.0, 10.0, 160, 48), width=160)
    assert (
        "traces: 1,000 seen = 990 recorded + 10 set aside (clock skew 7, late beyond the horizon 3); 12 open"
        in text
    )
    assert "NOT drop-free: 10 traces set aside (not measured)" in text


def _live_with_256_descriptors(rings, out) -> subprocess.Popen:
    import resource

    def few_descriptors():
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))

    return start_cli(
        "live", str(rings), "--no-live", "--out", str(out), columns=False, preexec_fn=few_descriptors
    )


def _ring_files_held(pid: int, rings) -> tuple[list[str], list[str]]:
    """The descriptors and the mappings of process ``pid`` that point into directory ``rings``."""
    fds, maps = held_files(pid)
    return [x for x in fds if str(rings) in x], [x for x in maps if str(rings) in x]


def _saved(out) -> dict:
    import json

    try:
        return json.loads((out / "meta.json").read_text())
    except (OSError, ValueError):
        return {}


def _until(cond, live: subprocess.Popen, what) -> None:
    deadline = time.monotonic() + 120  # hang guard only
    while not cond():
        assert live.poll() is None, live.communicate()
        assert time.monotonic() < deadline, f"hang guard: {what()}"
        time.sleep(0.2)


@pytest.mark.slow  # 1,000 writer processes
def test_live_releases_the_rings_of_writers_that_are_done_and_their_counts_stay(tmp_path):
    """1,000 short-lived writers under ``live DIR`` limited to 256 descriptors: each finished,
    drained ring is unmapped and removed (it used to keep a descriptor and a mapping each, until
    ``Too many open files``), and its counts stay in the accounting."""
    import os
    import signal

    writers, ticks = 1000, 10
    rings, out = tmp_path / "rings", tmp_path / "s"
    rings.mkdir()
    live = _live_with_256_descriptors(rings, out)

    def drained() -> int:
        return _saved(out).get("counters", {}).get("drained", 0)

    try:
        # Writers leave their rings to this live (announced), even one that ends before it attaches.
        made = subprocess.run([sys.executable, str(PROGRAMS / "short_writers.py"), str(writers), "8", str(ticks)],
                              env={**os.environ, "TICKSCOPE_RING_DIR": str(rings),
                                   "TICKSCOPE_COLLECTOR_PID": str(live.pid)},
                              capture_output=True, text=True, timeout=600)  # fmt: skip
        assert made.returncode == 0, made.stderr
        _until(lambda: drained() == writers * ticks and not any(rings.iterdir()), live,
               lambda: (drained(), len(list(rings.iterdir()))))  # fmt: skip
        held = _ring_files_held(live.pid, rings)
        live.send_signal(signal.SIGTERM)
        stdout, stderr = live.communicate(timeout=120)
    finally:
        live.kill()
    assert held == ([], []), f"descriptors and mappings of ring files left: {held}"
    assert live.returncode == 130 and "Traceback" not in stderr and "Too many open files" not in stderr, (
        stderr
    )
    meta = _saved(out)
    c = meta["counters"]
    assert c["produced"] == c["drained"] == writers * ticks
    assert c["produced"] == c["drained"] + c["dropped_ring_full"] + c["in_ring"] + c["drained_before_attach"]
    # released writers are folded into one row, the last few kept in full (docs/live.md)
    gone = meta["released_writers"]
    assert gone["writers"] == gone["closed_cleanly"] == writers and gone["drained"] == writers * ticks
    assert len(meta["rings"]) <= RELEASED_KEPT and all(r["closed_cleanly"] for r in meta["rings"])
    assert Session.load(out).summary()["tick_to_trade"]["count"] == writers * ticks


def test_rings_beyond_the_descriptor_limit_wait_their_turn_and_nothing_is_lost(tmp_path):
    """300 writers running at once under ``live`` limited to 256 descriptors: it attaches what the
    limit allows, says so in one line, and attaches the rest as the first ones finish."""
    import os
    import signal

    writers, ticks = 300, 10
    rings, out = tmp_path / "rings", tmp_path / "s"
    rings.mkdir()
    program = tmp_path / "many.py"
    program.write_text(
        "import sys, time\n"
        "from tickscope.probe import Point, TickWriter\n"
        "ws = [TickWriter([Point('a'), Point('b', stage='s', trade=True)], name='held', capacity=64)\n"
        f"      for _ in range({writers})]\n"
        "for i, w in enumerate(ws):\n"
        f"    t = w.stamps\n"
        f"    for seq in range(1 + i * {ticks}, 1 + (i + 1) * {ticks}):\n"
        "        t[0] = time.perf_counter_ns(); t[1] = t[0] + 5\n"
        "        t = w.commit(seq)\n"
        "print('written', flush=True)\n"
        "sys.stdin.readline()\n"
        "for w in ws:\n"
        "    w.close()\n"
    )
    live = _live_with_256_descriptors(rings, out)
    writer = None
    try:
        env = {**os.environ, "TICKSCOPE_RING_DIR": str(rings), "TICKSCOPE_COLLECTOR_PID": str(live.pid)}
        writer = subprocess.Popen([sys.executable, str(program)], env=env, stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, text=True)  # fmt: skip
        assert writer.stdout.readline() == "written\n"
        _until(lambda: any("rings wait" in e for e in _saved(out).get("ring_errors", [])), live,
               lambda: _saved(out).get("ring_errors"))  # fmt: skip
        fds, maps = _ring_files_held(live.pid, rings)
        assert 0 < len(fds) == len(maps) < 256, (len(fds), len(maps))
        writer.communicate("go\n", timeout=120)
        _until(lambda: _saved(out).get("counters", {}).get("drained") == writers * ticks and not any(rings.iterdir()),
               live, lambda: (_saved(out).get("counters"), len(list(rings.iterdir()))))  # fmt: skip
        live.send_signal(signal.SIGTERM)
        stdout, stderr = live.communicate(timeout=120)
    finally:
        live.kill()
        if writer is not None:
            writer.kill()
    assert live.returncode == 130 and "Traceback" not in stderr, stderr
    assert len([x for x in stderr.splitlines() if "rings wait" in x]) == 1, stderr
    c = _saved(out)["counters"]
    assert c["produced"] == c["drained"] == writers * ticks
    assert Session.load(out).summary()["tick_to_trade"]["count"] == writers * ticks


@needs_tool("tmux", install="apt-get install tmux")
@pytest.mark.parametrize("size", [(80, 24), (160, 45)])
def test_the_live_view_fills_80x24_and_grows_with_the_width(tmp_path, size):
    """The bundled pipeline (orders, hiccup meter) live: p90..p99.9 fit 80x24 with the records
    line unwrapped; 160 columns add percentiles and the whole run's; every figure in fmt_ns; the
    orders per leg kind of the default market maker, and in flight named as such while the run goes on."""
    w, h = size
    name = f"ts-{uuid.uuid4().hex[:8]}"
    out = tmp_path / "s"
    cmd = (
        f"{sys.executable} -m tickscope.main profile --duration 8s --rate 2k --no-perf --out {out}; sleep 20"
    )
    tmux("new-session", "-d", "-x", str(w), "-y", str(h), "-s", name, cmd)
    try:
        deadline = time.monotonic() + 60
        screen = ""
        while "orders:" not in screen or "hiccup:" not in screen:
            assert time.monotonic() < deadline, screen
            time.sleep(0.5)
            screen = tmux("capture-pane", "-p", "-t", name).stdout
        while not run_ended(out):
            assert time.monotonic() < deadline + 30, "profile did not finish"
            time.sleep(0.5)
    finally:
        tmux("kill-session", "-t", name)
    lines = screen.splitlines()
    head = next(line for line in lines if " stage " in line and "p50" in line).split()
    assert {"stage", "rate/s", "p50", "p90", "p99", "p99.9", "max"} <= set(head), head
    records = next(i for i, line in enumerate(lines) if line.startswith("records: produced"))
    assert lines[records + 1].startswith("traces:"), "the records line wraps"
    assert not re.search(r"\d(\.\d+)?us\b", screen), screen
    # The market maker's orders line names each leg kind; at 80 columns it may wrap onto lines of
    # its own (none of them starts with a "label:" as the next line of the view does).
    first = next(i for i, line in enumerate(lines) if line.startswith("orders:"))
    rest = itertools.takewhile(
        lambda line: line.strip() and not re.match(r"[\w -]+:", line), lines[first + 1 :]
    )
    orders = " ".join(line.strip() for line in [lines[first], *rest])
    assert re.fullmatch(r"orders: [\d,]+ sent \(bid [\d,]+, ask [\d,]+, hedge [\d,]+\) = [\d,]+ acked "
                        r"\+ [\d,]+ rejected \+ [\d,]+ in flight(; [\d,]+ held by risk)?", orders), orders  # fmt: skip
    if w >= 160:
        assert {"p99.99", "mean", "all"} <= set(head), head
        assert max(len(line.rstrip()) for line in lines if "│" in line) == w, "the table uses the width"
