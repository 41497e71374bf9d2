"""``tickscope live --watch``: the daemon shape of ``live``. Writers come and go for as long as it
runs; each is said when attached and released, and a released one leaves nothing behind in the
collector (no descriptor, no mapping) nor in the ring directory."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import needs_tool
from support import PROGRAMS, SUBJECT, held_files
from support.cli import CLI, cli_env, run_cli
from tickscope.collectors.rings.collector import Collector
from tickscope.collectors.rings.released import RELEASED_KEPT
from tickscope.collectors.session import Session

FOREVER = [*SUBJECT, "0", "--forever", "--rate", "20000", "--no-order-every", "3"]  # ticks until stopped
HANG_GUARD_S = 300  # hang guard only: every wait below is for a condition


def _start_watch(rings: Path, out: Path, err: Path, *extra: str) -> subprocess.Popen:
    """``live --watch`` left running, its stderr (the attached/released lines) into ``err``."""
    return subprocess.Popen([*CLI, "live", "--watch", str(rings), "-o", str(out), "--no-live", *extra],
                            env=cli_env(collector_pid=False), stdout=subprocess.DEVNULL,
                            stderr=err.open("w"), text=True)  # fmt: skip


def _until(cond, live: subprocess.Popen, what) -> None:
    deadline = time.monotonic() + HANG_GUARD_S
    while not cond():
        assert live.poll() is None, f"live ended early: {what()}"
        assert time.monotonic() < deadline, f"hang guard: {what()}"
        time.sleep(0.05)


def _lines(err: Path, word: str) -> list[str]:
    return [x for x in err.read_text().splitlines() if word in x]


def _held(pid: int, rings: Path, session: Path) -> tuple[list[str], list[str], list[str]]:
    """Process ``pid``'s descriptors (what they point to) other than its session's files and /proc
    reads (opened and closed as each interval is written: not what a released writer leaves), and
    its descriptors and mappings of files in ``rings``."""
    fds, maps = held_files(pid)
    maps = [x for x in maps if str(rings) in x]
    steady = sorted(x for x in fds if not x.startswith((str(session), "/proc/")) and str(rings) not in x)
    return steady, [x for x in fds if str(rings) in x], maps


def _session(out: Path) -> Path:
    sessions = [p for p in out.iterdir() if p.is_dir()]
    assert len(sessions) == 1, sessions
    return sessions[0]


def _shm() -> set[str]:
    return {p for p in os.listdir("/dev/shm") if p.startswith("tickscope")}


def test_500_writers_come_and_go_under_watch_and_leave_nothing_behind(tmp_path):
    """Writers (forked, ~7 s here) started and stopped 500 times, in rounds of 10 (pipeline restarts), every 5th one
    killed (SIGKILL: its ring never closed). Each is said in one line when released; afterwards the
    collector holds the descriptors it held before them, no mapping of a ring, the ring directory
    is empty, and the session counts exactly what the writers wrote."""
    writers, batch, ticks, kill_every = 500, 10, 100, 5
    rings, out, err = tmp_path / "rings", tmp_path / "out", tmp_path / "live.err"
    shm_before = _shm()
    live = _start_watch(rings, out, err, "--no-perf", "--no-hiccup")  # children of ours: not the subject here
    env = {**os.environ, "TICKSCOPE_RING_DIR": str(rings)}
    env.pop("TICKSCOPE_COLLECTOR_PID", None)  # the writers find the daemon by its attaching, as in production
    try:
        # the ring directory is made by --watch: writers may start after the daemon
        _until(lambda: rings.is_dir() and out.is_dir() and any(out.iterdir()), live, err.read_text)
        session = _session(out)
        one = subprocess.run([sys.executable, str(PROGRAMS / "watched_writers.py"), "1", "1", "10", "1000"],
                             env=env, timeout=HANG_GUARD_S)  # fmt: skip
        assert one.returncode == 0
        _until(lambda: len(_lines(err, "released writer")) == 1, live, err.read_text)
        baseline = _held(live.pid, rings, session)
        assert baseline[1:] == ([], []), baseline

        made = subprocess.run([sys.executable, str(PROGRAMS / "watched_writers.py"), str(writers), str(batch),
                               str(ticks), str(kill_every)], env=env, timeout=HANG_GUARD_S)  # fmt: skip
        assert made.returncode == 0
        _until(lambda: len(_lines(err, "released writer")) == writers + 1 and not any(rings.iterdir()), live,
               lambda: (len(_lines(err, "released writer")), sorted(rings.iterdir())))  # fmt: skip
        after = _held(live.pid, rings, session)
        assert live.poll() is None  # the last writer gone: a daemon stays
        live.send_signal(signal.SIGTERM)  # systemd's KillSignal: the engine's clean stop
        live.wait(timeout=HANG_GUARD_S)
    finally:
        live.kill()
        live.wait()
    assert after == baseline, f"held before {baseline}, after {after}"
    # rings live in tmp_path here; /dev/shm is shared with other runs: only what this live could own
    assert not [p for p in _shm() - shm_before if str(live.pid) in p]
    assert live.returncode == 130
    text = err.read_text()
    assert "Traceback" not in text and "skipped" not in text, text
    released = _lines(err, "released writer")
    died = [x for x in released if "exited without closing its ring" in x]
    assert len(died) == writers // kill_every
    assert len([x for x in released if "closed its ring" in x and x not in died]) == writers + 1 - len(died)
    assert all(x.endswith(f"; {ticks} records)") for x in released[1:]), released[:3]
    assert len(_lines(err, "attached writer")) == writers + 1
    meta = json.loads((session / "meta.json").read_text())
    c = meta["counters"]
    total = writers * ticks + 10
    assert c["produced"] == c["drained"] == total and c["dropped_ring_full"] == 0
    assert c["writers_died"] == writers // kill_every
    assert Session.load(session).summary()["tick_to_trade"]["count"] == total


@pytest.mark.slow  # 2,000 writer processes
def test_thousands_of_writers_under_watch_leave_one_aggregate_row_and_exact_counts(tmp_path):
    """A daemon's state is the size of what is attached, not of what came and went: 2,000 short
    writers (rounds of 20, every 7th killed) leave at most RELEASED_KEPT rows per writer in
    meta.json and in every per-writer structure of the collector (``writer_rows``), and the one
    aggregate row counts exactly what every writer wrote. (It grew by a row per writer, ~6.5 kB of
    RSS and ~660 bytes of meta.json each.)"""
    writers, batch, ticks, kill_every = 2000, 20, 20, 7
    rings, out, err = tmp_path / "rings", tmp_path / "out", tmp_path / "live.err"
    live = _start_watch(rings, out, err, "--no-perf", "--no-hiccup")
    env = {**os.environ, "TICKSCOPE_RING_DIR": str(rings)}
    env.pop("TICKSCOPE_COLLECTOR_PID", None)
    try:
        _until(lambda: rings.is_dir() and out.is_dir() and any(out.iterdir()), live, err.read_text)
        session = _session(out)
        made = subprocess.run([sys.executable, str(PROGRAMS / "watched_writers.py"), str(writers), str(batch),
                               str(ticks), str(kill_every)], env=env, timeout=HANG_GUARD_S)  # fmt: skip
        assert made.returncode == 0
        _until(lambda: len(_lines(err, "released writer")) == writers and not any(rings.iterdir()), live,
               lambda: len(_lines(err, "released writer")))  # fmt: skip
        live.send_signal(signal.SIGTERM)
        live.wait(timeout=HANG_GUARD_S)
    finally:
        live.kill()
        live.wait()
    assert live.returncode == 130 and "Traceback" not in err.read_text()
    meta = json.loads((session / "meta.json").read_text())
    rows = meta["writer_rows"]
    assert len(meta["rings"]) <= RELEASED_KEPT and rows["released_detail"] <= RELEASED_KEPT, rows
    assert rows["sources"] == rows["parting"] == rows["correlator_rings"] == rows["correlator_tsc"] == 0, rows
    assert rows["tsc_domains"] <= 1 and rows["identities"] <= Collector.IDENTITIES_KEPT, rows
    gone, c = meta["released_writers"], meta["counters"]
    died = writers // kill_every
    assert (gone["writers"], gone["closed_cleanly"]) == (writers, writers - died)
    assert gone["produced"] == gone["drained_before_attach"] + gone["drained"] == writers * ticks
    assert gone["dropped_ring_full"] == gone["in_ring"] == 0
    assert c["produced"] == c["drained"] + c["drained_before_attach"] == writers * ticks and c["in_ring"] == 0
    assert c["writers_died"] == died
    assert Session.load(session).summary()["tick_to_trade"]["count"] == writers * ticks


def test_watch_says_each_writer_once_and_keeps_running_after_the_last(tmp_path):
    """One writer under ``--watch``: "attached writer" then "released writer NAME.PID (pid PID closed
    its ring; N records)", one line each; the directory it watches did not exist when it started."""
    rings, out, err = tmp_path / "not-yet" / "rings", tmp_path / "out", tmp_path / "live.err"
    live = _start_watch(rings, out, err, "--no-perf", "--no-hiccup")
    env = {**os.environ, "TICKSCOPE_RING_DIR": str(rings)}
    env.pop("TICKSCOPE_COLLECTOR_PID", None)
    try:
        _until(rings.is_dir, live, err.read_text)
        made = subprocess.run([sys.executable, str(PROGRAMS / "watched_writers.py"), "1", "1", "1000", "1000"],
                              env=env, timeout=HANG_GUARD_S)  # fmt: skip
        assert made.returncode == 0
        _until(lambda: _lines(err, "released writer"), live, err.read_text)
        assert live.poll() is None
        live.send_signal(signal.SIGINT)
        live.wait(timeout=HANG_GUARD_S)
    finally:
        live.kill()
        live.wait()
    (attached,) = _lines(err, "attached writer")
    (released,) = _lines(err, "released writer")
    pid = attached.split("attached writer watched.")[1].split(" ")[0]
    assert released == f"tickscope: released writer watched.{pid} (pid {pid} closed its ring; 1,000 records)"


def test_each_start_of_watch_writes_a_new_session_under_out(tmp_path):
    """A restarted daemon (systemd Restart=on-failure) neither refuses on nor overwrites the
    session of the run before it: -o holds one session per start."""
    rings, out = tmp_path / "rings", tmp_path / "out"
    for _ in range(2):
        done = run_cli("live", "--watch", str(rings), "-o", str(out), "--no-live", "--duration", "1s", "--no-perf",
                       "--no-hiccup", "--name", "trader")  # fmt: skip
        assert done.returncode == 0, done.stderr
    sessions = sorted(p.name for p in out.iterdir())
    assert len(sessions) == 2 and all(s.endswith("-trader") for s in sessions), sessions
    assert all(json.loads((out / s / "meta.json").read_text())["status"] == "complete" for s in sessions)


def test_retention_under_watch_counts_the_sessions_of_earlier_starts(tmp_path):
    """``live --watch -o DIR`` writes a session per start; --retain and --max-disk count them all,
    remove the oldest first (a whole earlier session, said in one line) and leave alone whatever in
    DIR tickscope did not write."""
    rings, out = tmp_path / "rings", tmp_path / "out"
    base = ["live", "--watch", str(rings), "-o", str(out), "--no-live", "--duration", "1s", "--no-perf",
            "--no-hiccup"]  # fmt: skip

    def start(*extra: str) -> list[str]:
        done = run_cli(*base, *extra)
        assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
        return [x for x in done.stderr.splitlines() if "retention: removed" in x]

    def sessions() -> list[str]:
        return sorted(p.name for p in out.iterdir() if (p / "meta.json").is_file())

    assert start() == [] and start() == []
    a, b = sessions()
    meta = json.loads((out / a / "meta.json").read_text())  # the first start: two days ago
    meta["start_epoch_s"] -= 2 * 86400
    meta["end_epoch_s"] -= 2 * 86400
    (out / a / "meta.json").write_text(json.dumps(meta))
    (out / "notes").mkdir()
    (out / "notes" / "meta.json").write_text('{"command": "not tickscope"}')

    (line,) = start("--retain", "1d")
    assert f"removed earlier session {a} (" in line and line.endswith("older than --retain 1d"), line
    (b2, c) = [s for s in sessions() if s != "notes"]
    assert b2 == b

    lines = start("--max-disk", "1kB")  # less than any session: every earlier one goes, oldest first
    assert [x.split("removed earlier session ")[1].split(" ")[0] for x in lines] == [b, c], lines
    assert all("over --max-disk 1 kB" in x for x in lines), lines
    assert len([s for s in sessions() if s != "notes"]) == 1 and (out / "notes" / "meta.json").is_file()


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--watch", "{ring}"], "--watch watches one ring directory"),
        (["--watch", "{dir}", "-o", "{out}", "--force"], "--force has nothing to replace"),
        (["{dir}", "--hiccup"], "--hiccup writes into the session (give -o DIR"),
        (["{dir}", "--perf-pid", "{pid}"], "--perf-pid writes into the session (give -o DIR"),
        (["{dir}", "-o", "{out}", "--perf-pid", "999999999"], "--perf-pid 999999999: no such process"),
        (["{dir}", "-o", "{out}", "--perf-pid", "{pid}", "--no-perf"], "--perf-pid with --no-perf"),
    ],
)
def test_side_options_that_cannot_apply_to_live_are_one_line(tmp_path, args, says):
    rings = tmp_path / "rings"
    rings.mkdir()
    (rings / "x.ring").write_bytes(b"")
    subs = {"{ring}": str(rings / "x.ring"), "{dir}": str(rings), "{out}": str(tmp_path / "out"),
            "{pid}": str(os.getpid())}  # fmt: skip
    done = run_cli("live", "--no-live", "--duration", "1s", *[subs.get(a, a) for a in args])
    assert done.returncode == 2 and says in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


@needs_tool("perf", install="apt-get install linux-perf")
def test_live_runs_the_side_collectors_profile_has_and_the_report_shows_them(tmp_path):
    """``live -o`` starts the hiccup meter and perf stat (here on the subject's pid) as profile does,
    through the same construction; their files land in the live session and the report reads them."""
    from tickscope.reports.analysis.views import hiccup_series, perf_series

    rings, out = tmp_path / "rings", tmp_path / "s"
    rings.mkdir()
    subject = subprocess.Popen(FOREVER, env={**os.environ, "TICKSCOPE_RING_DIR": str(rings)})
    try:
        done = run_cli("live", str(rings), "--no-live", "--duration", "3s", "-o", str(out), "--perf-pid",
                       str(subject.pid))  # fmt: skip
    finally:
        subject.terminate()
        subject.wait()
    assert done.returncode == 0, done.stderr
    session = Session.load(out)
    hiccups = hiccup_series(session)
    assert hiccups is not None and len(hiccups["t"]) >= 1
    assert "task-clock" in perf_series(session)
    assert session.meta["command"] == "tickscope live"


def test_a_ring_skipped_mid_run_is_said_when_found_not_at_the_end(tmp_path):
    """A daemon runs for days: a ring it cannot read is said as it is found."""
    rings, out, err = tmp_path / "rings", tmp_path / "out", tmp_path / "live.err"
    live = _start_watch(rings, out, err, "--no-perf", "--no-hiccup")
    try:
        _until(lambda: rings.is_dir() and any(out.iterdir()), live, err.read_text)
        (rings / "junk.ring").write_bytes(b"\1" * 8192)
        _until(lambda: _lines(err, "skipped ring"), live, err.read_text)
        (line,) = _lines(err, "skipped ring")
        assert "junk.ring" in line and "bad magic" in line
        live.send_signal(signal.SIGINT)
        live.wait(timeout=HANG_GUARD_S)
    finally:
        live.kill()
        live.wait()
    assert len(_lines(err, "skipped ring")) == 1  # said once, not again at the end
