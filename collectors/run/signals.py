"""How a run answers signals: SIGTERM and SIGHUP end it as Ctrl-C does, and while it saves, any of
the three only says "please wait".

A closed terminal (SIGHUP) or a polite kill (SIGTERM) must end a session the way Ctrl-C does: the
target stopped in order, the session saved. Only SIGKILL skips that (the children then die with us,
see ``children``, and the next run removes our ring directory). Stopping and saving takes a moment
(the bundled pipeline's acks, a capture's end marker, a Prometheus linger): a second Ctrl-C there
used to leave the session marked running, half joined, so it is told to wait instead.

``profile``/``live`` (the run engine) and ``sweep`` (which stops a step process as Ctrl-C stops
``profile``) use these context managers and nothing else.
"""

from __future__ import annotations

import contextlib
import os
import signal

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class _Held:
    """Stop signals that came while a block must not be broken (``holding_interrupts``)."""

    depth = 0
    pending: str | None = None


_held = _Held()


def raise_interrupt(signum, _frame):
    name = signal.Signals(signum).name
    if _held.depth:
        _held.pending = _held.pending or name
        return
    raise KeyboardInterrupt(name)


@contextlib.contextmanager
def holding_interrupts():
    """Within: a stop signal is held until the block ends, then raised as ``KeyboardInterrupt``
    (under ``ending_like_ctrl_c``). For the collector's poll: its compiled kernels return through
    numba's Python glue, and an interrupt raised in there becomes a SystemError (a traceback, exit
    1) after the kernel took its batch from the open traces, which the run then never records. A
    poll lasts milliseconds."""
    _held.depth += 1
    try:
        yield
    finally:
        _held.depth -= 1
        name = None
        if not _held.depth:
            name, _held.pending = _held.pending, None
    if name:
        raise KeyboardInterrupt(name)


def say_saving(signum, _frame):
    os.write(2, f"tickscope: {signal.Signals(signum).name} while stopping: the session is being saved, "
                "please wait (kill -9 abandons it)\n".encode())  # fmt: skip


@contextlib.contextmanager
def _handling(signals, handler):
    # A signal the shell set to be ignored stays ignored: a background job is not Ctrl-C's, and
    # nohup's SIGHUP is not a hang-up to end on.
    previous = {
        sig: signal.signal(sig, handler) for sig in signals if signal.getsignal(sig) != signal.SIG_IGN
    }
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def ending_like_ctrl_c():
    """Within: SIGINT, SIGTERM and SIGHUP raise ``KeyboardInterrupt`` (named after the signal), or
    hold it to the end of a ``holding_interrupts`` block."""
    return _handling(STOP_SIGNALS, raise_interrupt)


def while_saving():
    """Within: SIGINT, SIGTERM and SIGHUP only print that the session is being saved."""
    return _handling(STOP_SIGNALS, say_saving)
