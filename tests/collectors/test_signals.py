"""A stop signal during the collector's poll waits for the poll's end (collectors/run/signals.py)."""

import os
import signal
import subprocess
import sys

import numpy as np
import pytest

from support import free_port
from tickscope.collectors.run.signals import ending_like_ctrl_c, holding_interrupts


@pytest.fixture(autouse=True)
def stop_signals_not_ignored():
    """As in a terminal's foreground job, whatever started the suite (a stop signal the shell set
    to be ignored stays ignored under ``ending_like_ctrl_c``)."""
    previous = {sig: signal.signal(sig, signal.SIG_DFL) for sig in (signal.SIGTERM, signal.SIGHUP)}
    previous[signal.SIGINT] = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    for sig, handler in previous.items():
        signal.signal(sig, handler)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_a_stop_signal_inside_a_held_block_is_raised_once_at_its_end(sig):
    """Raised inside, the interrupt would break a compiled kernel's return (numba's Python glue
    turns it into a SystemError chain and the batch the kernel took is lost); held, the block
    finishes and the interrupt, named after the signal, comes right after it, once."""
    from tickscope.collectors.session.hdr import BulkRecorder, new_histogram

    h = new_histogram()
    recorder = BulkRecorder(h)
    finished = False
    with ending_like_ctrl_c(), pytest.raises(KeyboardInterrupt, match=signal.Signals(sig).name):
        with holding_interrupts():
            with holding_interrupts():  # nested: held to the outermost block's end
                os.kill(os.getpid(), sig)
                for _ in range(50):  # Python runs the handler between these calls
                    recorder.record(h, np.arange(1000))
            finished = True
    assert finished and h.total_count == 50_000
    with ending_like_ctrl_c():  # nothing held over to the next block
        with holding_interrupts():
            pass


def test_outside_a_held_block_a_stop_signal_interrupts_at_once():
    with ending_like_ctrl_c(), pytest.raises(KeyboardInterrupt, match="SIGTERM"):
        os.kill(os.getpid(), signal.SIGTERM)
        for _ in range(10**6):
            pass
        raise AssertionError("not interrupted")


SIGNAL_IN_SET_UP = """
import json, os, signal, sys
from pathlib import Path
from tickscope.collectors.run.engine import RunPlan, run
from tickscope.collectors.side import SideCollectorBase
from tickscope.collectors.side.prometheus import PrometheusExporter

class Signalled(SideCollectorBase):
    # A Prometheus endpoint serves from prepare(): a scraper, or a kill, may come before the run
    # polls: during the set-up (prepare), or after it, before the side collectors start (start).
    name = "signalled"
    before_subject = True  # started first: before the exporter was, in a run that started it in turn

    def prepare(self, session_name):
        if sys.argv[4] == "prepare":
            os.kill(os.getpid(), getattr(signal, sys.argv[2]))

    def start(self, pid, session_dir):
        if sys.argv[4] == "start":
            os.kill(os.getpid(), getattr(signal, sys.argv[2]))

rings, out = Path(sys.argv[1]) / "rings", Path(sys.argv[1]) / "s"
rings.mkdir()
exporter = PrometheusExporter(f"127.0.0.1:{sys.argv[3]}", pipeline="p", linger_s=0)  # serving from prepare()
result = run(RunPlan("s", ring_dir=rings, out=out, side=[exporter, Signalled()], duration_s=60))
meta = json.loads((out / "meta.json").read_text())
print(result.exit_code, meta["status"], "prometheus" in meta)
"""


@pytest.mark.parametrize("when", ["prepare", "start"])
@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM", "SIGHUP"])
def test_a_stop_signal_during_the_set_up_ends_the_run_in_order(tmp_path, sig, when):
    """A run told to stop before it polled (a SIGTERM once its Prometheus endpoint serves, while the
    collector's kernels load) ends as Ctrl-C ends it: exit 130, the session saved as interrupted,
    the endpoint's conclusion (what it served, whom it turned away) in it.
    It died of the signal's default action, leaving the session marked running."""
    r = subprocess.run([sys.executable, "-c", SIGNAL_IN_SET_UP, str(tmp_path), sig, str(free_port()), when],
                       capture_output=True, text=True, timeout=120, preexec_fn=_stop_signals_default)  # fmt: skip
    # the last: the Prometheus endpoint that served before the run started is concluded with it
    assert (r.returncode, r.stdout.split()[-3:]) == (0, ["130", "interrupted", "True"]), r.stderr[-2000:]


def _stop_signals_default():
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_DFL)
