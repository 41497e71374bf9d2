"""Process lifecycle and session ownership, with real processes: whatever happens to tickscope or
its children, nothing keeps running, nothing is left in /dev/shm, no session is overwritten."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import needs_tool
from support import QUIET, SUBJECT, free_port
from support.cli import cli_env, run_cli, start_cli
from tickscope.collectors.run import profile as P
from tickscope.collectors.session import Session

HANG_GUARD_S = 60  # only a guard against hanging forever: every wait below is for a condition
# Every tickscope here starts as from a user's shell (collector_pid=False): what it leaves behind is
# its own doing, not that of a test announced as its collector.


def wait_for(condition, what):
    deadline = time.monotonic() + HANG_GUARD_S
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def hlog_lines(path: Path) -> int:
    try:
        return sum(1 for line in path.read_text().splitlines() if line.startswith("Tag="))
    except OSError:
        return 0


def children_of(pid: int) -> dict[int, str]:
    """Direct children of ``pid`` and their command lines, from /proc."""
    out = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_bytes()
            cmd = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if int(stat.rsplit(b")", 1)[1].split()[1]) == pid:
            out[int(entry)] = cmd
    return out


def running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_bytes().rsplit(b")", 1)[1].split()[0]
    except OSError:
        return False
    return state != b"Z"


def ignored_signals(pid: int) -> set[int]:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigIgn:"):
            mask = int(line.split()[1], 16)
            return {s for s in range(1, 65) if mask >> (s - 1) & 1}
    return set()


def ring_dirs_of(pid: int) -> list[Path]:
    return [p for p in Path("/dev/shm").glob(f"{P.RING_DIR_PREFIX}*") if f"-{pid}-" in p.name]


def kill_all(pids):
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


# -- 2. process lifecycle ------------------------------------------------------------------------


def test_kill_9_of_profile_takes_every_child_with_it_and_a_later_run_removes_its_rings(tmp_path):
    # Every kind of child: the pipeline, the hiccup meter, and the side tools where installed
    # (perf stat, tcpdump: a tcpdump left behind would write its capture forever).
    side = {"perf": shutil.which("perf") is not None, "tcpdump": shutil.which("tcpdump") is not None}
    proc = start_cli("profile", "--duration", "120s", "--rate", "5k", "--no-live", *(["--capture"] if side["tcpdump"] else []),
                     *([] if side["perf"] else ["--no-perf"]), "--out", str(tmp_path / "s"), collector_pid=False)  # fmt: skip
    kids = {}
    try:
        wait_for(lambda: hlog_lines(tmp_path / "s" / "latency.hlog") > 8 and (tmp_path / "s" / "hiccup.hlog").exists(),
                 "a few recorded intervals")  # fmt: skip
        kids = children_of(proc.pid)
        kids.update(
            {pid: cmd for kid in list(kids) for pid, cmd in children_of(kid).items()}
        )  # tcpdump's guard
        names = " ".join(kids.values())
        expected = ["pipeline.venue", "pipeline.trader", "hiccup"] + [
            tool for tool, there in side.items() if there
        ]
        assert all(n in names for n in expected), kids
        assert ring_dirs_of(proc.pid), "the run's private ring directory is named after its pid"
        proc.kill()
        proc.wait()
        wait_for(lambda: not any(running(pid) for pid in kids), f"children {kids} to die with tickscope")
    finally:
        proc.kill()
        kill_all(kids)  # survivors would hold the output pipes open
        proc.communicate(timeout=HANG_GUARD_S)
    stale = ring_dirs_of(proc.pid)
    assert stale, "kill -9 runs no cleanup: the ring directory is still there"

    out = run_cli("profile", "--out", str(tmp_path / "next"), *QUIET, "--", *SUBJECT, "100")
    assert out.returncode == 0, out.stderr
    assert not any(p.exists() for p in stale), "the next run removed the dead run's ring directory"


def test_a_run_says_which_ring_directories_of_killed_runs_it_removed(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f"{P.RING_DIR_PREFIX}{dead.pid}-abc"
    stale.mkdir()
    mine, notes = P.private_ring_dir(tmp_path)
    assert mine.name.startswith(f"{P.RING_DIR_PREFIX}{os.getpid()}-") and not stale.exists()
    assert notes == [f"removed 1 ring directory left by a killed tickscope run ({stale})"]


def test_stale_ring_dirs_of_live_owners_other_names_and_symlinks_are_left_alone(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f"{P.RING_DIR_PREFIX}{dead.pid}-abc"
    live = tmp_path / f"{P.RING_DIR_PREFIX}{os.getpid()}-abc"
    old_style = tmp_path / f"{P.RING_DIR_PREFIX}k2j3h4g5"
    target = tmp_path / "not-ours"
    for d in (stale, live, old_style, target):
        d.mkdir()
        (d / "x.ring").write_text("")
    link = tmp_path / f"{P.RING_DIR_PREFIX}{dead.pid}-link"
    link.symlink_to(target)
    assert P.remove_stale_ring_dirs(tmp_path) == [stale]
    assert not stale.exists() and live.exists() and old_style.exists() and (target / "x.ring").exists()


def test_a_target_killed_by_a_signal_is_reported_as_such(tmp_path):
    out = run_cli("profile", "--out", str(tmp_path / "s"), *QUIET, "--", "sh", "-c", "kill -KILL $$")
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "target \"sh -c 'kill -KILL $$'\" killed by SIGKILL" in out.stderr, out.stderr
    assert json.loads((tmp_path / "s" / "meta.json").read_text())["status"] == "target-failed"


def is_pipeline_process(victim: str, cmd: str) -> bool:
    """``cmd`` is the bundled pipeline's ``victim``: its trader, its venue, or venue2, the market
    maker's hedge venue (the same module, order entry only: ``--feed none``)."""
    if victim == "trader":
        return "pipeline.trader" in cmd
    return "pipeline.venue" in cmd and ("--feed none" in cmd) == (victim == "venue2")


# The default pipeline is the two-venue market maker: either venue dying ends the run, named.
@pytest.mark.parametrize("victim", ["trader", "venue", "venue2"])
def test_a_pipeline_process_killed_by_a_signal_is_reported_as_such(tmp_path, victim):
    proc = start_cli(
        "profile",
        "--duration",
        "120s",
        "--rate",
        "5k",
        *QUIET,
        "--out",
        str(tmp_path / "s"),
        collector_pid=False,
    )
    try:
        wait_for(lambda: hlog_lines(tmp_path / "s" / "latency.hlog") > 8, "a few recorded intervals")
        (pid,) = [p for p, cmd in children_of(proc.pid).items() if is_pipeline_process(victim, cmd)]
        os.kill(pid, signal.SIGKILL)
        out, err = proc.communicate(timeout=HANG_GUARD_S)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 2 and "Traceback" not in err, err
    assert f"tickscope profile: {victim} killed by SIGKILL" in err, err
    meta = json.loads((tmp_path / "s" / "meta.json").read_text())
    assert meta["status"] == "target-failed" and "session saved" in out


def ignore_sigint():
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # what a shell does to a background job


def test_a_background_job_with_sigint_ignored_still_stops_its_target_cleanly(tmp_path):
    """The target inherits SIGINT ignored; tickscope's stop must still be the one it honours:
    tick_subject closes its ring on SIGINT, so no writer is counted as died."""
    proc = start_cli("profile", "--duration", "1s", "--out", str(tmp_path / "s"), *QUIET, "--", *SUBJECT, "0",
                     "--forever", "--rate", "2000", preexec_fn=ignore_sigint, collector_pid=False)  # fmt: skip
    out, err = proc.communicate(timeout=HANG_GUARD_S)
    assert proc.returncode == 0, err
    s = Session.load(tmp_path / "s")
    assert s.meta["status"] == "complete" and s.meta["subject_exit"] == 0
    assert s.meta["counters"]["writers_died"] == 0, "the target was stopped by a signal it honours"


def test_children_of_a_background_job_do_not_inherit_ignored_stop_signals(tmp_path):
    proc = start_cli("profile", "--duration", "120s", "--rate", "2k", "--no-perf", "--no-live", "--out",
                     str(tmp_path / "s"), preexec_fn=ignore_sigint, collector_pid=False)  # fmt: skip
    try:
        wait_for(lambda: hlog_lines(tmp_path / "s" / "latency.hlog") > 4, "a few recorded intervals")
        assert signal.SIGINT in ignored_signals(proc.pid), (
            "the test really starts tickscope as a background job"
        )
        kids = children_of(proc.pid)
        assert len(kids) >= 3, kids
        for pid, cmd in kids.items():
            assert not {signal.SIGINT, signal.SIGTERM} & ignored_signals(pid), cmd
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=HANG_GUARD_S)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 130 and Session.load(tmp_path / "s").meta["status"] == "interrupted", err


def test_ctrl_c_prints_no_traceback_from_any_child(tmp_path):
    """Ctrl-C sends SIGINT to the terminal's whole foreground process group."""
    proc = start_cli("profile", "--duration", "120s", "--no-perf", "--no-live", "--out", str(tmp_path / "s"), "--",
                     *SUBJECT, "0", "--forever", "--rate", "2000", start_new_session=True, collector_pid=False)  # fmt: skip
    try:
        wait_for(lambda: hlog_lines(tmp_path / "s" / "hiccup.hlog") >= 1, "the hiccup meter's first interval")
        os.killpg(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=HANG_GUARD_S)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    s = Session.load(tmp_path / "s")
    assert s.meta["status"] == "interrupted"


PROBED = """
import sys
from time import perf_counter_ns
from tickscope.probe import Point, TickWriter
probe = TickWriter([Point("md.rx"), Point("order.tx", stage="send")], name="readme")
t, seq = probe.stamps, 0
while sys.argv[1] == "forever" or seq < 100:  # forever: until tickscope stops it (KeyboardInterrupt)
    seq += 1
    t[0] = perf_counter_ns()
    t[1] = perf_counter_ns()
    t = probe.commit(seq)
if sys.argv[1] == "close":
    probe.close()
"""


@pytest.mark.parametrize("ending", ["close", "exit"])
def test_a_probed_program_run_without_tickscope_leaves_no_ring(tmp_path, ending):
    env = {**cli_env(collector_pid=False), "TICKSCOPE_RING_DIR": str(tmp_path / "rings")}
    subprocess.run([sys.executable, "-c", PROBED, ending], env=env, check=True, timeout=HANG_GUARD_S)
    assert list((tmp_path / "rings").iterdir()) == []


@pytest.mark.parametrize("ending", ["close", "exit", "forever"])
def test_under_profile_a_writer_is_drained_and_closed_however_it_ends(tmp_path, ending):
    """Closed at exit (not unlinked: a collector is announced), so every record is drained, even
    from a program that exits before the collector first looks, and none counts as died."""
    out = run_cli("profile", "--duration", "2s", "--out", str(tmp_path / "s"), *QUIET, "--", sys.executable, "-c",
                  PROBED, ending)  # fmt: skip
    assert out.returncode == 0, out.stderr
    c = Session.load(tmp_path / "s").meta["counters"]
    assert c["produced"] == c["drained"] + c["dropped_ring_full"] and c["writers_died"] == 0
    assert c["drained"] == 100 if ending != "forever" else c["drained"] > 100


# -- 4. sessions are never overwritten -----------------------------------------------------------


def test_default_session_names_are_unique_within_one_second(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    from tickscope.collectors.run import claim

    monkeypatch.setattr(claim.time, "strftime", lambda fmt: "20260101-120000")
    first, second = claim.default_session_dir("pipeline"), claim.default_session_dir("pipeline")
    assert first != second and first.is_dir() and second.is_dir()
    assert (first.name, second.name) == ("20260101-120000-pipeline", "20260101-120000-pipeline-2")


def test_out_onto_an_existing_session_refuses_unless_forced(tmp_path):
    failed = run_cli(
        "profile", "--out", str(tmp_path / "s"), *QUIET, "--", *SUBJECT, "50", "--exit-code", "3"
    )
    assert failed.returncode == 2
    before = (tmp_path / "s" / "meta.json").read_text()
    again = run_cli("profile", "--out", str(tmp_path / "s"), *QUIET, "--", *SUBJECT, "80")
    assert again.returncode == 2 and "Traceback" not in again.stderr
    (line,) = again.stderr.strip().splitlines()
    assert str(tmp_path / "s") in line and "--force" in line and "target-failed" in line, line
    assert (tmp_path / "s" / "meta.json").read_text() == before, "the refused run changed nothing"

    (tmp_path / "s" / "notes.txt").write_text("mine")
    (tmp_path / "s" / "perf.csv").write_text("stale")
    (tmp_path / "s" / "wire.pcap").write_text("stale")  # an earlier run's --capture
    forced = run_cli("profile", "--out", str(tmp_path / "s"), "--force", *QUIET, "--", *SUBJECT, "80")
    assert forced.returncode == 0, forced.stderr
    s = Session.load(tmp_path / "s")
    assert s.meta["status"] == "complete" and s.summary()["tick_to_trade"]["count"] == 80
    for stale in ("perf.csv", "wire.pcap"):
        assert not (tmp_path / "s" / stale).exists(), (
            f"no file of the old session ({stale}) mixes into the new one"
        )
    assert (tmp_path / "s" / "notes.txt").read_text() == "mine", "files that are not a session's are kept"


def test_out_onto_a_non_empty_directory_refuses(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "x").write_text("")
    out = run_cli("profile", "--out", str(tmp_path / "d"), *QUIET, "--", *SUBJECT, "10")
    assert out.returncode == 2 and "is not empty" in out.stderr and "--force" in out.stderr


def test_two_concurrent_runs_onto_one_out_one_refuses_cleanly(tmp_path):
    # The first run lasts until the second has answered, then is stopped (Ctrl-C): a fixed
    # duration raced the second's start-up on a loaded host (the first had ended, the second ran).
    first = start_cli("profile", "--duration", "10m", "--out", str(tmp_path / "s"), *QUIET, "--", *SUBJECT, "0",
                      "--forever", "--rate", "2000", collector_pid=False)  # fmt: skip
    try:
        wait_for(lambda: (tmp_path / "s" / "meta.json").exists(), "the first run's session")
        started = time.monotonic()
        second = run_cli("profile", "--out", str(tmp_path / "s"), "--force", *QUIET, "--", *SUBJECT, "10")
        time.sleep(max(0.0, 3.0 - (time.monotonic() - started)))  # the first has recorded a while
        first.send_signal(signal.SIGINT)
        out, err = first.communicate(timeout=HANG_GUARD_S)
    finally:
        first.kill()
        first.wait()
    assert second.returncode == 2 and "Traceback" not in second.stderr
    assert "being written by another tickscope run" in second.stderr, second.stderr
    assert first.returncode == 130 and "Traceback" not in err, err
    s = Session.load(tmp_path / "s")
    assert s.meta["status"] == "interrupted" and s.summary()["tick_to_trade"]["count"] > 100


def test_ctrl_c_of_bench_traders_lets_its_profile_save_and_leaves_no_rings(tmp_path):
    """The benchmark must not kill the profile it runs (subprocess.run does on KeyboardInterrupt:
    SIGKILL, so the pipeline died with it and the ring directory stayed in /dev/shm)."""
    script = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_traders.py"
    env = {**cli_env(collector_pid=False), "TMPDIR": str(tmp_path)}
    proc = subprocess.Popen([sys.executable, str(script), "--duration", "120", "--rate", "2000", "--warmup", "0"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)  # fmt: skip
    try:
        session = wait_for(lambda: next(iter(tmp_path.glob("tickscope-bench-traders-*/python")), None),
                           "the Python trader's session directory")  # fmt: skip
        wait_for(lambda: hlog_lines(session / "latency.hlog") >= 1, "the first interval")
        os.killpg(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=HANG_GUARD_S)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 130 and "Traceback" not in err, err
    assert err.strip() == f"interrupted: the python trader's session so far is in {session}", err
    s = Session.load(session)
    assert s.meta["status"] == "interrupted"
    ring_dirs = {Path(r["path"]).parent for r in s.meta["rings"]}
    assert ring_dirs and not any(d.exists() for d in ring_dirs), ring_dirs


SLOW_TO_STOP = """
import pathlib, signal, sys, time
from time import perf_counter_ns
from tickscope.probe import Point, TickWriter
probe = TickWriter([Point("md.rx"), Point("order.tx", stage="send")], name="slow")
def stopping(*_):  # tickscope is now in its stop phase, waiting for us: hold it there a while
    pathlib.Path(sys.argv[1]).touch()
    time.sleep(3)
    probe.close()
    sys.exit(0)
signal.signal(signal.SIGINT, stopping)
t, seq = probe.stamps, 0
while True:
    seq += 1
    t[0] = perf_counter_ns()
    t[1] = perf_counter_ns()
    t = probe.commit(seq)
    time.sleep(0.001)
"""


def test_a_second_ctrl_c_while_stopping_is_told_to_wait_and_the_session_is_still_saved(tmp_path):
    """An impatient second Ctrl-C used to break off the stop: the session stayed 'running', the
    side collectors (a capture's join) undone, and the one line said only 'error: interrupted'."""
    stopping = tmp_path / "stopping"
    proc = start_cli("profile", "--duration", "120s", "--out", str(tmp_path / "s"), *QUIET, "--", sys.executable,
                     "-c", SLOW_TO_STOP, str(stopping), collector_pid=False)  # fmt: skip
    try:
        wait_for(lambda: hlog_lines(tmp_path / "s" / "latency.hlog") >= 1, "the first interval")
        proc.send_signal(signal.SIGINT)
        wait_for(stopping.exists, "the target to be asked to stop")
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=HANG_GUARD_S)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 130 and "Traceback" not in err, err
    assert "SIGINT while stopping: the session is being saved, please wait" in err, err
    assert "interrupted: session saved up to now" in err, err
    s = Session.load(tmp_path / "s")
    assert s.meta["status"] == "interrupted" and s.meta["counters"]["writers_died"] == 0


def test_a_run_stopped_before_anything_was_traced_says_what_the_pipeline_was_doing(tmp_path):
    """--fix-connect to a port nobody listens on, stopped while the trader still retries: 'no traces'
    alone would send the user looking at probes; the trader's last line says it never connected."""
    port = free_port()  # nobody listens there
    proc = start_cli("profile", "--fix-connect", f"127.0.0.1:{port}", "--duration", "120s", *QUIET,
                     "--out", str(tmp_path / "s"), collector_pid=False)  # fmt: skip
    try:
        said = f"waiting for FIX acceptor 127.0.0.1:{port}"

        def trader_waits():
            logs = [d / "logs" / "trader.err" for d in ring_dirs_of(proc.pid)]
            return any(p.is_file() and said in p.read_text() for p in logs)

        wait_for(trader_waits, "the trader to say it waits for its acceptor")
        proc.send_signal(signal.SIGINT)  # within the trader's 5 s of retrying
        out, err = proc.communicate(timeout=HANG_GUARD_S)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 130, err
    assert f"nothing was traced; the pipeline's last line: trader: {said}" in err, err


def marked_processes(marker: str) -> list[int]:
    """Living (not zombie) processes with ``marker`` in their command line, from /proc."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
            with open(f"/proc/{entry}/stat", "rb") as f:
                zombie = f.read().rsplit(b")", 1)[1].split()[0] == b"Z"
        except OSError:
            continue
        if marker.encode() in argv and not zombie:
            found.append(int(entry))
    return found


@pytest.mark.parametrize("command", ["profile", "sweep"])
@pytest.mark.parametrize("ending", ["target exits", "ctrl-c"])
def test_no_descendant_of_the_target_outlives_the_run(tmp_path, command, ending):
    """A target's background jobs outlived the run: ``sh -c "sleep 60 & exit 0"`` left the sleep,
    and Ctrl-C stopped the shell but not its jobs (a shell starts them with SIGINT ignored). Every
    descendant ends with the run: the ones left in the target's process group, and one that left
    it (``setsid``) and is re-parented to tickscope as subreaper."""
    marker = f"tickscope-test-descendant-{os.getpid()}-{tmp_path.name}"
    stay = f"{sys.executable} -c 'import time; time.sleep(60)' {marker} &"
    leave = f"{sys.executable} -c 'import os, time; os.setsid(); time.sleep(60)' {marker} &"
    script = f"{stay} {leave} " + ("sleep 1; exit 0" if ending == "target exits" else "sleep 30")
    args = {"profile": ["profile", "--duration", "20s", "--out", str(tmp_path / "s"), *QUIET],
            "sweep": ["sweep", "--rates", "100", "--duration", "20s", "--warmup", "0s", "-o", str(tmp_path / "s")]}  # fmt: skip
    proc = start_cli(*args[command], "--", "sh", "-c", script, start_new_session=True, collector_pid=False)
    try:
        if ending == "ctrl-c":
            wait_for(lambda: len(marked_processes(marker)) == 2, "both background jobs to start")
            proc.send_signal(signal.SIGINT)  # to tickscope alone: the jobs ignore it anyway
        out, err = proc.communicate(timeout=HANG_GUARD_S)
        assert "Traceback" not in err, err
        assert proc.returncode == (130 if ending == "ctrl-c" else 0), (proc.returncode, out, err)
        assert marked_processes(marker) == [], f"descendants outlived tickscope {command}"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for pid in marked_processes(marker):
            os.kill(pid, signal.SIGKILL)


# -- the session is closed exactly once -------------------------------------------------------------
# Every write-open of a session file and every meta.json published (os.replace of its .tmp, with
# the status it carries), as the tickscope process itself does them: Python's audit hooks see them.
WRITES_AUDITED = """
import atexit, json, os, sys
SESSION, LOG = sys.argv[1], sys.argv[2]
events = []
WRITE = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT

def hook(event, args):
    if event == "open" and isinstance(args[0], str) and args[0].startswith(SESSION):
        mode, flags = args[1] or "", args[2] or 0
        if any(c in mode for c in "wax+") or flags & WRITE:
            events.append(["write", os.path.basename(args[0])])
    elif event == "os.rename" and str(args[1]) == os.path.join(SESSION, "meta.json"):
        with open(args[0]) as f:
            events.append(["meta", json.load(f)["status"]])

sys.addaudithook(hook)
atexit.register(lambda: open(LOG, "w").write(json.dumps(events)))
sys.argv = ["tickscope", *sys.argv[3:]]
from tickscope.main import main
main()
"""


def _session_writes(tmp_path, *args) -> list:
    session, log = tmp_path / "s", tmp_path / "writes.json"
    r = subprocess.run([sys.executable, "-c", WRITES_AUDITED, str(session), str(log), "profile", "--out",
                        str(session), *QUIET, *args], capture_output=True, text=True, env=cli_env(),
                       timeout=HANG_GUARD_S * 3)  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(log.read_text())


def _closed_once(events: list) -> None:
    published = [status for kind, status in events if kind == "meta"]
    assert published[0] == "running" and published.count("running") == len(published) - 1, published
    last = len(events) - 1 - events[::-1].index(["meta", published[-1]])
    after = [e for e in events[last + 1 :] if e[0] == "write"]
    assert not after, f"written after the session was closed: {after}"
    assert events.count(["write", "latency.hlog"]) == 1  # opened once, never reopened to append


def test_a_session_with_an_exporter_is_closed_once_and_never_written_after(tmp_path):
    """The exporter's cost (meta.json ``prometheus``) goes in before the close, not by rewriting
    meta.json after the session was marked complete."""
    events = _session_writes(tmp_path, "--duration", "1s", "--prometheus", f"127.0.0.1:{free_port()}",
                             "--prometheus-linger", "0s", "--", *SUBJECT, "0", "--forever", "--rate", "2000")  # fmt: skip
    _closed_once(events)
    assert "prometheus" in json.loads((tmp_path / "s" / "meta.json").read_text())


@needs_tool("tcpdump", install="apt-get install tcpdump")
def test_a_captured_session_gets_its_wire_tags_before_the_close_and_prints_them(tmp_path):
    """``--capture``'s wire tags: added to the open latency.hlog and summary.json, the session
    closed once afterwards; the console prints the rows the run computed, equal to the saved ones."""
    events = _session_writes(tmp_path, "--capture", "--duration", "2s", "--rate", "2k")
    _closed_once(events)
    s = Session.load(tmp_path / "s")
    assert s.summary()["wire_to_wire"]["count"] > 0 and "wire_to_wire" in s.intervals
    assert s.meta["status"] == "complete" and s.meta["capture"]["counters"]
