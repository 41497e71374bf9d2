"""A stop signal during the collector's poll waits for the poll's end (collectors/run/signals.py)."""

import os
import signal

import numpy as np
import pytest

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
