"""``python -m tickscope.collectors.run.guard PARENT_PID -- CMD ...``: run CMD and end it when tickscope dies.

See ``children.spawn_guarded``: CMD may drop or change its credentials (tcpdump does), which
clears the parent-death signal tickscope's children rely on. This process keeps it (SIGTERM) and
stays CMD's parent: the signals it is stopped with are passed on to CMD, tickscope's death becomes
a SIGTERM to CMD (tcpdump then flushes its file and exits), and CMD's exit status becomes ours.
Kept to the standard library and a few lines: it starts before every capture.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)


def main(argv: list[str]) -> int:
    if len(argv) < 3 or argv[1] != "--" or not argv[0].isdigit():
        print("usage: python -m tickscope.collectors.run.guard PARENT_PID -- CMD [ARG ...]", file=sys.stderr)
        return 2
    parent, cmd = int(argv[0]), argv[2:]
    received: list[int] = []
    child: subprocess.Popen | None = None

    def forward(signum, _frame):
        received.append(signum)
        if child is not None:
            child.send_signal(signum)

    for sig in FORWARDED:  # before CMD starts: a death signal from here on reaches it
        signal.signal(sig, forward)
    if os.getppid() != parent:  # tickscope died before the handlers were in: start nothing
        return 1
    try:
        child = subprocess.Popen(cmd)
    except OSError as e:
        print(f"tickscope guard: cannot start {cmd[0]}: {e.strerror or e}", file=sys.stderr)
        return 127
    for signum in received:  # a stop that came while CMD was being started
        child.send_signal(signum)
    code = child.wait()
    return 128 - code if code < 0 else code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
