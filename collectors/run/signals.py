"""How a run answers signals: SIGTERM and SIGHUP end it as Ctrl-C does, and while it saves, any of
the three only says "please wait".

A closed terminal (SIGHUP) or a polite kill (SIGTERM) must end a session the way Ctrl-C does: the
target stopped in order, the session saved. Only SIGKILL skips that (the children then die with us,
see ``children``, and the next run removes our ring directory). Stopping and saving takes a moment
(the bundled pipeline's acks, a capture's end marker, a Prometheus linger): a second Ctrl-C there
used to leave the session marked running, half joined, so it is told to wait instead.

``profile``/``live`` (the run engine) and ``sweep`` (which stops a step process as Ctrl-C stops
``profile``) use these two context managers and nothing else.
"""

from __future__ import annotations

import contextlib
import os
import signal

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def raise_interrupt(signum, _frame):
    raise KeyboardInterrupt(signal.Signals(signum).name)


def say_saving(signum, _frame):
    os.write(2, f"tickscope: {signal.Signals(signum).name} while stopping: the session is being saved, "
                "please wait (kill -9 abandons it)\n".encode())  # fmt: skip


@contextlib.contextmanager
def _handling(signals, handler):
    previous = {sig: signal.signal(sig, handler) for sig in signals}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def ending_like_ctrl_c():
    """Within: SIGTERM and SIGHUP raise ``KeyboardInterrupt`` (named after the signal), as SIGINT does."""
    return _handling((signal.SIGTERM, signal.SIGHUP), raise_interrupt)


def while_saving():
    """Within: SIGINT, SIGTERM and SIGHUP only print that the session is being saved."""
    return _handling(STOP_SIGNALS, say_saving)
