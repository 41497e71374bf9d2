"""The run loop's sleep (``wake.Wakeup``): up to a second between polls at low rates, cut short at
once by the subject's exit or a new ring. Nothing here waits on the clock: each sleep that must
be cut short is a whole minute long, so a wake that never comes fails the test (at pytest's own
timeout or on the reason returned), and every count is exact."""

import os
import resource
import signal
import subprocess
import sys
import time

from tickscope.collectors.rings.collector import Collector, monotonic_ns
from tickscope.collectors.run.engine import RunPlan, run
from tickscope.collectors.run.subject import CommandSubject
from tickscope.collectors.run.wake import RING_WAKE_GAP_S, Wakeup
from tickscope.probe import Point, TickWriter

MINUTE = 60.0
POINTS = [Point("md.rx"), Point("signal", stage="strategy"), Point("order.tx", stage="send", trade=True)]


def test_a_watched_process_exiting_ends_the_sleep_and_is_watched_no_longer(tmp_path):
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    wake = Wakeup([child.pid], tmp_path)
    try:
        child.stdin.close()  # it exits now, during a minute's sleep
        assert wake.sleep(MINUTE) == "exit"
        child.wait()
        assert wake.sleep(0) is None  # its descriptor, readable for good, was dropped
    finally:
        wake.close()


def test_a_ring_created_in_the_directory_ends_the_sleep_and_its_event_is_consumed(tmp_path):
    wake = Wakeup([], tmp_path)
    try:
        assert wake.sleep(0) is None
        writer = TickWriter(POINTS, name="late", capacity=1 << 6, directory=tmp_path)
        assert wake.sleep(MINUTE) == "ring"
        time.sleep(RING_WAKE_GAP_S)
        assert wake.sleep(0) is None  # the event read: the next sleep is a sleep
        writer.close()
    finally:
        wake.close()


def test_writers_coming_and_going_wake_the_loop_at_most_once_per_gap(tmp_path):
    """A thread pool that opens a ring per short-lived thread must not poll the collector per
    thread: a ring appearing within RING_WAKE_GAP_S of the last ring wake waits for the gap."""
    wake = Wakeup([], tmp_path)
    try:
        wake.sleep(0)
        (tmp_path / "a.ring").touch()
        assert wake.sleep(MINUTE) == "ring"
        woke_at = time.monotonic()
        (tmp_path / "b.ring").touch()
        assert wake.sleep(MINUTE) == "ring"  # the second event, once the gap has passed
        assert time.monotonic() - woke_at >= RING_WAKE_GAP_S
    finally:
        wake.close()


def test_descriptors_past_1024_are_watched_too(tmp_path):
    """A collector of thousands of rings holds descriptors past select()'s 1024: the pidfd it opens
    then is one of them."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(max(soft, 2048), hard), hard))
    held = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]  # as a thousand rings' mappings do
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    wake = Wakeup([child.pid], tmp_path)
    try:
        assert max(wake._pidfds) > 1024
        child.stdin.close()
        assert wake.sleep(MINUTE) == "exit"
        child.wait()
    finally:
        wake.close()
        for fd in held:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_without_anything_to_watch_it_is_a_plain_sleep(tmp_path):
    wake = Wakeup([os.getpid() + 10_000_000], tmp_path / "missing")  # no such process, no such directory
    assert wake.sleep(0.001) is None
    wake.close()


def _sleeps_with(monkeypatch, act):
    """Wakeup.sleep, with ``act(n)`` run before the n-th sleep; ``act`` returning True makes that
    sleep a minute long. Returns the reasons the sleeps ended."""
    reasons, real = [], Wakeup.sleep

    def sleep(self, seconds):
        n = len(reasons)
        if act(n):
            seconds = MINUTE
        reasons.append(real(self, seconds))
        return reasons[-1]

    monkeypatch.setattr(Wakeup, "sleep", sleep)
    return reasons


def test_the_subject_ending_mid_sleep_ends_the_run_at_once(monkeypatch, tmp_path):
    subjects = []

    def start(env):
        subjects.append(CommandSubject([sys.executable, "-c", "import time; time.sleep(600)"], env))
        return subjects[-1]

    def kill_at_third(n):
        if n == 2:
            os.kill(subjects[0].pid, signal.SIGTERM)
            return True
        return False

    reasons = _sleeps_with(monkeypatch, kill_at_third)
    result = run(
        RunPlan("s", start_subject=start, save=False, duration_s=None, interval_s=600, poll_max_s=10)
    )
    assert reasons[2] == "exit" and len(reasons) == 3  # the poll after it saw the exit and ended the run
    assert result.exit_code != 0  # a subject killed by a signal, not stopped by us


def test_a_writer_starting_mid_sleep_is_drained_at_once(monkeypatch, ring_dir):
    writers = []

    def open_at_third(n):
        if n == 2:
            writers.append(TickWriter(POINTS, name="late", capacity=1 << 8, directory=ring_dir))
            t, base = writers[0].stamps, monotonic_ns()
            for seq in range(100):
                t[0], t[1], t[2] = base + seq, base + seq + 100, base + seq + 300
                t = writers[0].commit(seq)
            return True
        return False

    drained, poll = [], Collector.poll

    def counting(self, now_ns=None):
        drained.append(poll(self, now_ns))
        return drained[-1]

    monkeypatch.setattr(Collector, "poll", counting)
    reasons = _sleeps_with(monkeypatch, open_at_third)
    run(RunPlan("s", ring_dir=ring_dir, save=False, duration_s=3.0, interval_s=600, poll_max_s=10))
    writers[0].close()
    assert reasons[2] == "ring"
    assert drained[3] == 100  # the poll right after the ring appeared drained all of it


def test_a_ring_file_still_without_its_header_is_looked_at_again_soon(ring_dir):
    """inotify wakes the loop when the file is created, before its writer has written the header:
    that poll skips it, and the next one must not wait a whole ceiling for it (its traces would
    close without its points meanwhile)."""
    col = Collector(ring_dir, interval_s=3600)
    (ring_dir / "early.ring").write_bytes(bytes(4096))  # created and sized, no magic yet
    col.poll()
    assert col.next_sleep(0.5, ceiling_s=1.0) == Collector.CREATING_SLEEP_S
    (ring_dir / "early.ring").unlink()
    col.poll()
    assert col.next_sleep(0.5, ceiling_s=1.0) == 1.0


def test_a_ring_whose_writer_is_held_mid_creation_is_waited_for_not_skipped(ring_dir):
    """A writer descheduled between sizing its file and publishing the magic (a loaded host held
    a thread past the 1 s grace) keeps its ring while its process lives: once the header is there
    every record is drained. A header-less file whose writer is gone is skipped with its reason."""
    col = Collector(ring_dir, interval_s=3600)
    gone = subprocess.Popen(["true"])
    gone.wait()
    stalled = ring_dir / f"slow.{os.getpid()}.{os.getpid()}.ring"  # our own pid: alive
    dead = ring_dir / f"dead.{gone.pid}.{gone.pid}.ring"
    for path in (stalled, dead):
        path.write_bytes(bytes(4096))
        os.utime(path, (time.time() - 5, time.time() - 5))  # past the grace
    col.poll()
    assert col.next_sleep(0.5, ceiling_s=1.0) == 1.0, "a slow writer is looked at again at the pace"
    assert any("dead" in e and "truncated header" in e for e in col.ring_errors)
    assert not any("slow" in e for e in col.ring_errors)
    stalled.unlink()  # the writer comes back: its ring, header and all, where the empty file was
    w = TickWriter([Point("md.rx"), Point("order.tx", stage="send", trade=True)], name="slow")
    os.rename(w.path, stalled)
    t = w.stamps
    for seq in range(1, 101):
        t[0], t[1] = 1_000 * seq, 1_000 * seq + 10
        t = w.commit(seq)
    col.poll()
    assert col.records_drained() == 100
    w.close()
