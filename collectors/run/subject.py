"""What the run engine measures: a ``Subject``, with every hook it offers declared here, each with a
default, so the engine asks for nothing a subject might not have.

- ``CommandSubject``: any command, started by us (``profile -- CMD``);
- ``ReferencePipeline`` (``launch.py``): the bundled venue and trader, started by us;
- ``AttachedRings``: a pipeline already running, whose rings we only read (``live``).
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal

from tickscope.collectors.run.children import exit_description, spawn_child, stop_child
from tickscope.collectors.run.claim import ProfileError


class Subject:
    description = ""
    pid: int | None = None  # the process side collectors attach to (perf, py-spy); None: none of ours
    stopped_by_us = False

    def poll(self) -> int | None:
        """Its exit code once it ended on its own; None while it runs (or when it is not ours)."""
        return None

    def stop(self, timeout_s: float = 5.0) -> int | None:
        return None

    def pids(self) -> list[int]:
        """Its processes whose exit the run loop must see at once, not a sleep later (``wake``)."""
        return []

    def failure_reason(self) -> str | None:
        """Why the subject failed when it ended on its own (None: it did not fail)."""
        return None

    def last_words(self) -> str | None:
        """What explains a run that traced nothing (e.g. the trader's last stderr line)."""
        return None

    def ports(self) -> dict[str, int]:
        """The ports its traffic uses, for a wire capture: ``md_port`` (UDP market data),
        ``order_port`` (TCP orders), ``ws_port`` (a WebSocket feed). Empty: not known."""
        return {}


class CommandSubject(Subject):
    """Any command, as a child tickscope owns (``children``): its own process group, so stopping it
    stops its children too; it dies with tickscope. Stopped with SIGINT first, like Ctrl-C, which
    is what programs are written to handle (restored to its default action in the child)."""

    def __init__(self, argv: list[str], env: dict[str, str]):
        self.description = shlex.join(argv)
        exe = argv[0]
        if os.sep not in exe and shutil.which(exe, path=env.get("PATH")) is None:
            raise ProfileError(f"target command not found: {exe!r} (check the spelling or PATH)")
        try:
            self.proc = spawn_child(argv, env=env)
        except OSError as e:
            raise ProfileError(
                f"cannot start target {exe!r}: {e.strerror or e} (check the command after --)"
            ) from None
        self.pid = self.proc.pid
        self.stopped_by_us = False

    def poll(self) -> int | None:
        return self.proc.poll()

    def pids(self) -> list[int]:
        return [self.proc.pid]

    def stop(self, timeout_s: float = 5.0) -> int | None:
        self.stopped_by_us = self.proc.poll() is None
        return stop_child(self.proc, signal.SIGINT, timeout_s)  # its group too, though it has exited

    def failure_reason(self) -> str | None:
        code = self.proc.poll()
        if self.stopped_by_us or code in (None, 0):
            return None
        return f"target {self.description!r} {exit_description(code)}"


class AttachedRings(Subject):
    """A pipeline we did not start: it runs on when we detach, and only the duration or Ctrl-C
    ends the run."""

    description = "tickscope live"
