"""Many short-lived writer processes, a few at a time (tests of releasing finished rings).

    python short_writers.py WRITERS BATCH TICKS
Forks WRITERS children, BATCH at a time; each creates a ring in $TICKSCOPE_RING_DIR, commits
TICKS complete ticks (trace ids unique across writers), closes the ring and exits.
"""

import os
import sys
import time

from tickscope.probe import Point, TickWriter

POINTS = [Point("md.rx"), Point("md.decoded", stage="feed"), Point("order.tx", stage="send", trade=True)]


def write(first: int, n: int) -> None:
    w = TickWriter(POINTS, name="short", capacity=64)
    t = w.stamps
    for seq in range(first, first + n):
        now = time.perf_counter_ns()
        t[0], t[1], t[2] = now, now + 100, now + 250
        t = w.commit(seq)
    w.close()


def main() -> int:
    writers, batch, ticks = (int(a) for a in sys.argv[1:4])
    failed = 0
    for start in range(0, writers, batch):
        children = []
        for i in range(start, min(start + batch, writers)):
            pid = os.fork()
            if pid == 0:
                code = 1
                try:
                    write(1 + i * ticks, ticks)
                    code = 0
                finally:
                    os._exit(code)
            children.append(pid)
        for pid in children:
            failed += os.waitpid(pid, 0)[1] != 0
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
