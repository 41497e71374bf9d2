"""Trusting rings only as far as they deserve: counters checked and accounted for exactly, rings
opened only when they are ours, and drops that tell the user what to change."""

import json
import os
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
from rich.console import Console

from support import PROGRAMS, QUIET
from support.cli import run_cli, start_cli
from tickscope.collectors.rings.collector import Collector
from tickscope.collectors.rings.reader import RingFormatError, RingReader, find_rings
from tickscope.collectors.session import Session, SessionWriter
from tickscope.probe import Point, TickWriter
from tickscope.probe import layout as L
from tickscope.reports.console import CountersLine

POINTS = [Point("md.rx"), Point("md.decoded", stage="feed"), Point("order.tx", stage="send", trade=True)]


def render(renderable, width=200) -> str:
    c = Console(record=True, width=width, color_system=None)
    c.print(renderable)
    return c.export_text()


def ticks(writer: TickWriter, first: int, n: int) -> None:
    t = writer.stamps
    for seq in range(first, first + n):
        now = time.perf_counter_ns()
        t[0], t[1], t[2] = now, now + 100, now + 250
        t = writer.commit(seq)


def accounted(c: dict) -> int:
    return c["drained"] + c["dropped_ring_full"] + c["in_ring"] + c["drained_before_attach"]


# -- 3. exact accounting ----------------------------------------------------------------------


def test_records_line_adds_up_mid_run_with_the_backlog_as_its_own_term(ring_dir):
    w = TickWriter(POINTS, name="t", capacity=256)
    collector = Collector(ring_dir)
    ticks(w, 1, 100)
    collector.poll()
    ticks(w, 101, 40)  # published, not drained yet
    c = collector.counter_dict()
    assert (c["produced"], c["drained"], c["in_ring"]) == (140, 100, 40) and accounted(c) == c["produced"]
    text = render(CountersLine(c))
    assert "produced 140 = drained 100 + dropped 0 (ring full) + in ring 40" in text
    assert "drop-free so far" in text
    collector.finish()
    w.close()


def test_the_live_view_shows_the_backlog_term_and_each_ring_problem():
    from tickscope.collectors.session import Snapshot
    from tickscope.reports.live import render as dashboard_of

    counters = {
        "produced": 140,
        "drained": 100,
        "dropped_ring_full": 0,
        "in_ring": 40,
        "rings_quarantined": 1,
    }
    errors = ["quarantined ring /dev/shm/r/bad.1.1.ring: impossible counters (head went back from 9 to 3)",
              "skipped ring /dev/shm/r/x.ring: is a symbolic link; tickscope opens ring files only, never links"]  # fmt: skip
    state = Snapshot(elapsed_s=2.0, tags=["feed"], trade_stages=["feed"], counters=counters, rings=2,
                      ring_errors=errors)  # fmt: skip
    for w, h in ((160, 48), (80, 24)):
        text = render(dashboard_of(state, {}, 2.0, None, w, h), width=w)
        assert "produced 140 = drained 100 + dropped 0 (ring full) + in ring 40" in text.replace("\n", " ")
        assert "quarantined ring /dev/shm/r/bad.1.1.ring" in text and "skipped ring /dev/shm/r/x.ring" in text
        assert "NOT drop-free: 1 ring quarantined" in text.replace("\n", " ")
        assert all(len(line) <= w for line in text.splitlines())


def test_a_killed_collector_is_not_called_drop_free(ring_dir, tmp_path):
    """The collector saves per interval; killed, its last save still owes the records in the ring."""
    w = TickWriter(POINTS, name="t", capacity=1024)
    out = tmp_path / "s"
    collector = Collector(ring_dir, SessionWriter(out, {"name": "s"}), interval_s=0.05)
    ticks(w, 1, 500)
    collector.poll()
    collector.poll()  # the traces close once every ring has been drained again
    ticks(w, 501, 581)  # then the collector dies before draining these
    collector._roll(collector.start_ns + 10**9)  # its last save, as at the end of an interval
    del collector
    meta = json.loads((out / "meta.json").read_text())
    assert meta["status"] == "running" and meta["drop_free"] is False
    assert meta["counters"]["in_ring"] == 581 and accounted(meta["counters"]) == meta["counters"]["produced"]
    report = run_cli("report", str(out))
    assert report.returncode == 0, report.stderr
    assert "+ in ring 581" in report.stdout
    assert "581 produced but never drained: the collector stopped" in report.stdout
    assert "drop-free:" not in report.stdout.replace("NOT drop-free:", "")
    w.close()


def test_a_session_saved_without_the_backlog_term_names_its_remainder():
    """Sessions written before in_ring was counted: the numbers from the issue."""
    text = render(
        CountersLine({"produced": 278_070, "drained": 277_489, "dropped_ring_full": 0}, status="running")
    )
    assert "produced 278,070 = drained 277,489 + dropped 0 (ring full) + never drained 581" in text
    assert "NOT drop-free: 581 produced but never drained: the collector stopped" in text


def corrupt(path: Path, offset: int, value: int) -> None:
    with open(path, "r+b") as f:
        header = bytearray(f.read(L.DATA_OFFSET))
        struct.pack_into("<Q", header, offset, value)
        f.seek(0)
        f.write(header)


def test_impossible_counters_quarantine_one_ring_and_the_rest_go_on(ring_dir, tmp_path):
    good = TickWriter(POINTS, name="good", capacity=256)
    bad = TickWriter(POINTS, name="bad", capacity=256)
    out = tmp_path / "s"
    collector = Collector(ring_dir, SessionWriter(out, {"name": "s"}))
    ticks(good, 1, 100)
    ticks(bad, 1001, 50)
    collector.poll()
    ticks(bad, 1051, 20)  # published under sane counters: still worth keeping
    corrupt(bad.path, L.OFF_DROPPED_FULL, 2**63 + 5)
    ticks(good, 101, 100)
    collector.finish()
    meta = json.loads((out / "meta.json").read_text())
    rings = {r["writer"]: r for r in meta["rings"]}
    assert meta["status"] == "complete"
    assert (
        "impossible counters" in rings["bad"]["quarantined"] and "dropped_full" in rings["bad"]["quarantined"]
    )
    assert rings["bad"]["drained"] == 70 and rings["bad"]["dropped_ring_full"] == 0  # never 2**63+5
    assert rings["good"]["drained"] == rings["good"]["produced"] == 200 and "quarantined" not in rings["good"]
    assert meta["counters"]["rings_quarantined"] == 1 and meta["drop_free"] is False
    assert any(e.startswith(f"quarantined ring {bad.path}") for e in meta["ring_errors"])
    assert "1 ring quarantined" in render(CountersLine(meta["counters"], status="complete"))
    good.close()
    bad.close()


def test_a_c_ring_with_a_runaway_head_is_quarantined(ring_dir, tmp_path, c_build):
    exe = c_build("c_writer.c")
    out = subprocess.run([str(exe), "100", "0", "1024"], env={**os.environ, "TICKSCOPE_RING_DIR": str(ring_dir)},
                         capture_output=True, text=True, timeout=60)  # fmt: skip
    assert out.returncode == 0, out.stderr
    (c_ring,) = find_rings(ring_dir)
    corrupt(c_ring, L.OFF_HEAD, 800 + 10 * 1024)
    py = TickWriter(POINTS, name="py", capacity=256)
    ticks(py, 1, 50)
    collector = Collector(ring_dir, SessionWriter(tmp_path / "s", {"name": "s"}))
    collector.finish()
    meta = json.loads((tmp_path / "s" / "meta.json").read_text())
    rings = {r["writer"]: r for r in meta["rings"]}
    assert "exceeds capacity=1024" in rings["cwriter"]["quarantined"] and rings["cwriter"]["drained"] == 0
    assert rings["py"]["drained"] == 50 and meta["status"] == "complete"
    py.close()


GOING_BAD = {"dropped": "impossible counters", "head": "impossible counters",
             "truncated": "truncated to 0 bytes while attached"}  # fmt: skip


@pytest.mark.parametrize("which", GOING_BAD)
def test_profile_survives_a_ring_going_bad_mid_run(tmp_path, which):
    out, ring_dir_file = tmp_path / "s", tmp_path / "ring_dir"
    subject = [sys.executable, str(PROGRAMS / "corrupting_subject.py"), which, str(ring_dir_file)]
    res = run_cli("profile", "--duration", "60s", *QUIET, "--out", str(out),
                  "--", *subject)  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert "quarantined ring" in res.stderr and GOING_BAD[which] in res.stderr
    assert "Traceback" not in res.stderr + res.stdout
    meta = json.loads((out / "meta.json").read_text())
    rings = {r["writer"]: r for r in meta["rings"]}
    assert meta["status"] == "complete" and meta["counters"]["rings_quarantined"] == 1
    assert rings["bad"]["drained"] == 300 and "quarantined" in rings["bad"]
    assert rings["good"]["drained"] == rings["good"]["produced"] == 1000
    assert Session.load(out).summary()["tick_to_trade"]["count"] == 1300
    assert not Path(ring_dir_file.read_text()).exists(), "the ring directory is removed"


def test_live_survives_a_writer_truncating_its_ring_under_the_mapping(tmp_path):
    """A truncated mapped file turns the next read of it into SIGBUS: ``live`` used to die of it
    (exit -7, no summary, session left running). Now the ring is quarantined with one line."""
    rings, out, ring_dir_file = tmp_path / "rings", tmp_path / "s", tmp_path / "ring_dir"
    rings.mkdir()
    live = start_cli("live", str(rings), "--no-live", "--out", str(out), columns=False)
    try:
        subject = subprocess.run([sys.executable, str(PROGRAMS / "corrupting_subject.py"), "truncated",
                                  str(ring_dir_file)], env={**os.environ, "TICKSCOPE_RING_DIR": str(rings)},
                                 capture_output=True, text=True, timeout=120)  # fmt: skip
        assert live.poll() is None, live.communicate()
        live.terminate()
        stdout, stderr = live.communicate(timeout=120)
    finally:
        live.kill()
    assert subject.returncode == 0, subject.stderr
    assert live.returncode == 130 and "Traceback" not in stderr, stderr
    (line,) = [x for x in stderr.splitlines() if "quarantined" in x]
    assert "bad" in line and "truncated to 0 bytes while attached" in line, line
    assert "tick_to_trade" in stdout, "the summary is printed"
    meta = json.loads((out / "meta.json").read_text())
    assert meta["status"] == "interrupted" and meta["counters"]["rings_quarantined"] == 1
    rings_meta = {r["writer"]: r for r in meta["rings"]}
    assert rings_meta["bad"]["drained"] == 300 and "truncated" in rings_meta["bad"]["quarantined"]
    assert rings_meta["good"]["drained"] == rings_meta["good"]["produced"] == 1000
    assert Session.load(out).summary()["tick_to_trade"]["count"] == 1300


# -- 5. live attaches only to what it should ---------------------------------------------------


def test_a_symlinked_ring_is_never_opened(ring_dir, tmp_path):
    elsewhere = tmp_path / "theirs"
    elsewhere.mkdir()
    theirs = TickWriter(POINTS, name="theirs", capacity=64, directory=elsewhere)
    ticks(theirs, 1, 10)
    (ring_dir / "x.ring").symlink_to(theirs.path)
    victim = tmp_path / "passwd"
    victim.write_bytes(b"root:x:0:0::/root:/bin/sh\n" * 400)
    (ring_dir / "y.ring").symlink_to(victim)
    before = victim.read_bytes()
    with pytest.raises(RingFormatError, match="symbolic link"):
        RingReader(ring_dir / "x.ring")
    collector = Collector(ring_dir)
    collector.finish()
    assert collector.sources == [] and len(collector.ring_errors) == 2
    assert all("is a symbolic link" in e for e in collector.ring_errors)
    assert theirs._ring.u64(L.OFF_TAIL)[0] == 0, "their tail is untouched"
    assert victim.read_bytes() == before
    theirs.close()


@pytest.mark.skipif(os.geteuid() != 0, reason="changing a file's owner needs root")
def test_a_ring_of_another_user_is_refused(ring_dir):
    w = TickWriter(POINTS, name="other", capacity=64)
    os.chown(w.path, 65534, 65534)
    with pytest.raises(RingFormatError, match="owned by uid 65534"):
        RingReader(w.path)
    w.close()


def test_a_ring_another_collector_drains_is_refused(ring_dir):
    w = TickWriter(POINTS, name="t", capacity=64)
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        struct.pack_into("<I", w._ring.mm, L.OFF_READER_PID, holder.pid)
        w._ring.u64(L.OFF_READER_HEARTBEAT_NS)[0] = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
        with pytest.raises(
            RingFormatError,
            match=f"already drained by another collector, pid {holder.pid} \\(stop that one first\\)",
        ):
            RingReader(w.path)
    finally:
        holder.kill()
        holder.wait()
    RingReader(w.path).close()  # its collector gone: ours to drain
    w.close()


def test_live_attaches_only_to_the_named_ring_and_prints_each_skipped_one(ring_dir, tmp_path):
    a = TickWriter(POINTS, name="a", capacity=256)
    b = TickWriter(POINTS, name="b", capacity=256)
    ticks(a, 1, 50)
    ticks(b, 1001, 50)
    (ring_dir / "junk.ring").write_bytes(b"\x01" * (L.DATA_OFFSET + 64))
    (ring_dir / "short.ring").write_bytes(b"\x00" * 100)
    os.utime(ring_dir / "short.ring", (time.time() - 10, time.time() - 10))  # not being created: stale
    (ring_dir / "link.ring").symlink_to(b.path)
    res = run_cli("live", str(a.path), "--duration", "0.5s", "--no-live", "--out", str(tmp_path / "one"))
    assert res.returncode == 0, res.stderr
    meta = json.loads((tmp_path / "one" / "meta.json").read_text())
    assert [r["writer"] for r in meta["rings"]] == ["a"] and meta["counters"]["drained"] == 50
    assert b._ring.u64(L.OFF_TAIL)[0] == 0, "a ring not named is not drained"
    # The whole directory: every ring that is not ours to read is named on stderr with its reason.
    res = run_cli("live", str(ring_dir), "--duration", "0.5s", "--no-live")
    assert res.returncode == 0, res.stderr
    lines = res.stderr.splitlines()
    for name, reason in (("junk.ring", "bad magic"), ("short.ring", "truncated header"),
                         ("link.ring", "is a symbolic link")):  # fmt: skip
        assert any(f"skipped ring {ring_dir / name}: {reason}" in line for line in lines), (name, res.stderr)
    assert b._ring.u64(L.OFF_TAIL)[0] == 50
    a.close()
    b.close()


def test_live_with_only_unusable_rings_named_is_one_line_exit_2(ring_dir):
    (ring_dir / "junk.ring").write_bytes(b"\x01" * (L.DATA_OFFSET + 64))
    res = run_cli("live", str(ring_dir / "junk.ring"), "--duration", "0.5s", "--no-live")
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert f"skipped ring {ring_dir / 'junk.ring'}: bad magic" in res.stderr
    assert "none of the 1 named rings could be attached" in res.stderr


# -- 9. drops that matter are loud -------------------------------------------------------------


def test_a_c_ring_that_dropped_says_which_capacity_it_needed(ring_dir, tmp_path, c_build):
    exe = c_build("c_writer.c")

    def overfill():
        out = subprocess.run([str(exe), "1000", "0", "256"], env={**os.environ, "TICKSCOPE_RING_DIR": str(ring_dir)},
                             capture_output=True, text=True, timeout=60)  # fmt: skip
        assert out.returncode == 0 and "dropped=7744" in out.stdout, out.stdout + out.stderr

    overfill()
    (ring,) = find_rings(ring_dir)
    res = run_cli("live", str(ring_dir), "--duration", "0.5s", "--no-live")
    assert res.returncode == 0, res.stderr
    assert f"ring {ring} (cwriter, pid" in res.stdout
    assert not ring.exists(), "drained to the end of a closed writer: removed"
    # 256 waiting + 7,744 dropped with nobody draining: 8,000 slots, the next power of two 8,192.
    assert "dropped 7,744 of 8,000 records (97%): capacity 256, its peak backlog needed 8,000" in res.stdout
    assert "use capacity 1 << 13 (8,192)" in res.stdout
    overfill()
    strict = run_cli("live", str(ring_dir), "--duration", "0.5s", "--no-live", "--fail-on-drops")
    assert strict.returncode == 1 and "--fail-on-drops" in strict.stderr


def test_profile_fail_on_drops_is_exit_1_and_names_the_fix(tmp_path):
    """The subject freezes the collector (SIGSTOP to its parent) while it overfills its ring, so
    the drops do not depend on how fast this host is."""
    program = tmp_path / "overfill.py"
    program.write_text(
        "import os, signal, time\n"
        "from tickscope.probe import Point, TickWriter\n"
        "w = TickWriter([Point('a'), Point('b', stage='s', trade=True)], name='small', capacity=16)\n"
        "os.kill(os.getppid(), signal.SIGSTOP)\n"
        "try:\n"
        "    t = w.stamps\n"
        "    for seq in range(1, 101):\n"
        "        t[0] = time.perf_counter_ns(); t[1] = t[0] + 5\n"
        "        t = w.commit(seq)\n"
        "finally:\n"
        "    os.kill(os.getppid(), signal.SIGCONT)\n"
        "w.close()\n"
    )
    args = ["profile", "--duration", "60s", *QUIET]
    for flags, code in (([], 0), (["--fail-on-drops"], 1)):
        res = run_cli(*args, *flags, "--out", str(tmp_path / f"s{code}"), "--", sys.executable, str(program))
        assert res.returncode == code, res.stderr
        assert "NOT drop-free: 84 dropped because a ring was full" in res.stdout
        assert (
            "dropped 84 of 100 records (84%): capacity 16" in res.stdout
            and "use capacity 1 << 7 (128)" in res.stdout
        )
    assert "records lost or traces set aside (see above): exit 1 (--fail-on-drops)" in res.stderr


def test_finish_drains_what_was_published_then_stops_though_the_writer_goes_on(ring_dir):
    """``tickscope live`` detaches from a writer that keeps running: finishing drains what was
    published when it began, instead of polling until the writer happens to pause."""
    w = TickWriter(POINTS, name="busy", capacity=1024)
    seq = iter(range(1, 10**9))

    class WriterNeverPauses(Collector):
        polls = 0

        def poll(self, now_ns=None):
            self.polls += 1
            assert self.polls < 1000, "finish() never returned while the writer kept writing"
            ticks(w, next(seq), 1)  # one more tick published before every poll
            return super().poll(now_ns)

    collector = WriterNeverPauses(ring_dir)
    ticks(w, 10**6, 300)
    collector.finish()
    c = collector.counter_dict()
    assert c["drained"] >= 300 and c["in_ring"] <= 2 and accounted(c) == c["produced"]
    w.close()
