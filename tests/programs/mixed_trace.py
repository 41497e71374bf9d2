"""The Python half of traces whose other half is a Rust process (tests/probe/test_rust_probe.py).

    python mixed_trace.py RUST_WRITER TRACES
Per trace: md.rx stamped here (PointWriter, CLOCK_MONOTONIC), then the trace id goes down a pipe
to ``rust_writer relay``, which stamps md.decoded and order.tx (TSC) and echoes the id back.
Lockstep, so the Rust stamps always follow the Python one in time.
"""

import subprocess
import sys

from tickscope.probe import Point, PointWriter

POINTS = [Point("md.rx"), Point("md.decoded", stage="feed"), Point("order.tx", stage="send", trade=True)]


def main() -> int:
    exe, traces = sys.argv[1], int(sys.argv[2])
    probe = PointWriter(POINTS, name="python-mixed")
    rust = subprocess.Popen(
        [exe, "relay"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1
    )
    for trace in range(1, traces + 1):
        probe.record(0, trace)
        rust.stdin.write(f"{trace}\n")
        rust.stdin.flush()
        echoed = rust.stdout.readline()
        if echoed.strip() != str(trace):
            print(f"mixed_trace: rust relay answered {echoed!r} to trace {trace}", file=sys.stderr)
            return 1
    rust.stdin.close()
    code = rust.wait()
    probe.close()
    print(f"traces={traces} dropped={probe.dropped} rust_exit={code}", flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
