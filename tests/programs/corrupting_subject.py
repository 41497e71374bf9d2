"""A probed program whose second ring's header goes bad mid-run (tests of quarantine).

    python corrupting_subject.py {dropped|head|truncated} RING_DIR_FILE
Writes 500 ticks to ring "good" and 300 to ring "bad", waits until the collector has drained
both, then stores an impossible counter into "bad"'s header (dropped_full = 2**63 + 5, or head far
beyond tail + capacity) or truncates "bad"'s file to 0 bytes under the collector's mapping, never
writes to "bad" again, writes 500 more ticks to "good" and waits until they are drained too.
Writes $TICKSCOPE_RING_DIR into RING_DIR_FILE first.
"""

import atexit
import os
import struct
import sys
import time
from pathlib import Path

from tickscope.probe import Point, TickWriter
from tickscope.probe import layout as L

POINTS = [Point("md.rx"), Point("md.decoded", stage="feed"), Point("order.tx", stage="send", trade=True)]


def ticks(writer: TickWriter, first: int, n: int) -> None:
    t = writer.stamps
    for seq in range(first, first + n):
        now = time.perf_counter_ns()
        t[0], t[1], t[2] = now, now + 100, now + 250
        t = writer.commit(seq)


def drained(writer: TickWriter, deadline: float) -> None:
    """Wait (hang guard only) until the collector has released every published record."""
    tail = writer._ring.u64(L.OFF_TAIL)
    head = writer._ring.u64(L.OFF_HEAD)
    while tail[0] != head[0]:
        if time.monotonic() > deadline:
            sys.exit("collector never drained the ring")
        time.sleep(0.01)


def main() -> int:
    which, ring_dir_file = sys.argv[1], Path(sys.argv[2])
    ring_dir_file.write_text(os.environ["TICKSCOPE_RING_DIR"])
    deadline = time.monotonic() + 60
    good = TickWriter(POINTS, name="good", capacity=1024)
    bad = TickWriter(POINTS, name="bad", capacity=1024)
    ticks(good, 1, 500)
    ticks(bad, 100_001, 300)
    drained(good, deadline)
    drained(bad, deadline)
    mm = bad._ring.mm
    if which == "truncated":
        atexit.unregister(bad.close)  # closing stores into the mapping: SIGBUS for us too
        os.truncate(bad.path, 0)
    elif which == "dropped":
        struct.pack_into("<Q", mm, L.OFF_DROPPED_FULL, 2**63 + 5)
    else:
        (head,) = struct.unpack_from("<Q", mm, L.OFF_HEAD)
        struct.pack_into("<Q", mm, L.OFF_HEAD, head + 10 * bad._ring.capacity)
    ticks(good, 501, 500)
    drained(good, deadline)
    good.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
