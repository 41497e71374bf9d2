"""Writer processes started and stopped in rounds, as a pipeline restarted many times would be.

    python watched_writers.py WRITERS BATCH TICKS KILL_EVERY
Forks WRITERS children, BATCH at a time (one round: a restart of the pipeline); each creates a
ring in $TICKSCOPE_RING_DIR, waits until a collector is draining it (no sleeping on a guess),
commits TICKS complete ticks (trace ids unique across writers), then closes its ring and exits,
except every KILL_EVERY-th writer, which kills itself with SIGKILL (a dead writer: ring not
closed). Exit code: 0 when every child ended as planned.
"""

import os
import signal
import sys
import time

from tickscope.probe import Point, TickWriter

POINTS = [Point("md.rx"), Point("md.decoded", stage="feed"), Point("order.tx", stage="send", trade=True)]
ATTACH_GUARD_S = 120  # hang guard only: a collector that never attaches fails the child


def write(first: int, n: int, die: bool) -> int:
    w = TickWriter(POINTS, name="watched", capacity=1 << 10)
    deadline = time.monotonic() + ATTACH_GUARD_S
    while not w.collector_alive():
        if time.monotonic() > deadline:
            return 3
        time.sleep(0.005)
    t = w.stamps
    for seq in range(first, first + n):
        now = time.perf_counter_ns()
        t[0], t[1], t[2] = now, now + 100, now + 250
        t = w.commit(seq)
    if die:
        os.kill(os.getpid(), signal.SIGKILL)
    w.close()
    return 0


def main() -> int:
    writers, batch, ticks, kill_every = (int(a) for a in sys.argv[1:5])
    failed = 0
    for start in range(0, writers, batch):
        children = {}
        for i in range(start, min(start + batch, writers)):
            die = (i + 1) % kill_every == 0
            pid = os.fork()
            if pid == 0:
                code = 1
                try:
                    code = write(1 + i * ticks, ticks, die)
                finally:
                    os._exit(code)
            children[pid] = die
        for pid, die in children.items():
            status = os.waitpid(pid, 0)[1]
            if die:
                failed += not (os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL)
            else:
                failed += os.waitstatus_to_exitcode(status) != 0
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
